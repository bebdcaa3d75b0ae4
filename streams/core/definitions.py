"""Reading definition files (segments, flows, experiments) with errors that name the file."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from streams.core.errors import ConfigError


def read_definitions(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from e


def top_level_list(text: str, source: str, key: str) -> list[Any]:
    """The list under `key` in a YAML document (empty when the document is)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {e}") from e
    raw = (doc or {}).get(key, []) if isinstance(doc, dict) or doc is None else None
    if not isinstance(raw, list):
        raise ConfigError(f"{source} must have a top-level `{key}:` list")
    return raw


def refuse_duplicates(names: Sequence[str], source: str, kind: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: {kind} `{duplicates[0]}` is defined more than once")


def version_of(text: str) -> str:
    """A short hash of a definition file: the version stamped on what it produces."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]
