"""Tidemail's exceptions: one root and a few specific kinds that callers act on."""


class TidemailError(Exception):
    """Root of every error Tidemail raises on purpose."""


class ConfigError(TidemailError):
    """A setting or definition file is invalid; start-up must stop."""


class InvalidEvent(TidemailError):
    """An input message breaks the event contract; it is dead-lettered with this reason."""


class RenderError(TidemailError):
    """A template failed to render for one job; the trigger is dead-lettered."""


class InvalidJob(TidemailError):
    """A record on the jobs topic breaks the job contract; the deliverer dead-letters it."""
