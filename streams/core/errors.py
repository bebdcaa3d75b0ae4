"""Tidemail's exceptions: one root and a few specific kinds that callers act on."""

from __future__ import annotations

from typing import Any


def shown(value: Any) -> str:
    """A value as error messages quote it: its repr, cut to 60 characters."""
    if value is None:
        return "null or nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TidemailError(Exception):
    """Root of every error Tidemail raises on purpose."""


class ConfigError(TidemailError):
    """A setting or definition file is invalid; start-up must stop."""


class ServiceUnavailable(TidemailError):
    """A service a process needs at start-up (Kafka) did not answer in time; it stops, and
    whatever supervises it starts it again."""


class InvalidEvent(TidemailError):
    """An input message breaks the event contract; it is dead-lettered with this reason."""


class RenderError(TidemailError):
    """A template failed to render for one job; the trigger is dead-lettered."""


class InvalidJob(TidemailError):
    """A record on the jobs topic breaks the job contract; the deliverer dead-letters it."""
