"""The published JSON Schemas (draft 2020-12) of the event and email job contracts: package
data in `streams/schemas/`, served by the API at `/schemas/{name}` for producers' CI."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import orjson

SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"
SUFFIX: Final = ".schema.json"
SCHEMA_NAMES: Final = ("event", "email-job", "email-job-withdrawal")


def schema_name(requested: str) -> str | None:
    """The schema a request names, with or without the `.schema.json` suffix; None if unknown."""
    name = requested.removesuffix(SUFFIX)
    return name if name in SCHEMA_NAMES else None


@functools.cache
def schema_bytes(name: str) -> bytes:
    """A schema file as shipped, read once: the API serves these exact bytes."""
    return (SCHEMA_DIR / f"{name}{SUFFIX}").read_bytes()


def schema(name: str) -> dict[str, Any]:
    """A schema as a JSON document, for validators."""
    doc: dict[str, Any] = orjson.loads(schema_bytes(name))
    return doc
