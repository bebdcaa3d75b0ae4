"""Durations in definition files: `30s`, `15m`, `2h`, `7d`, `2w`."""

from __future__ import annotations

import re

from streams.core.errors import ConfigError

UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(\d+)([smhdw])$")


def parse_duration(value: object, where: str) -> int:
    """Milliseconds of a duration like `7d`; `where` names the field for the error message."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(f"{where} must be a duration like `7d`, `12h` or `30m`; got {value!r}")
    return int(match.group(1)) * UNIT_MS[match.group(2)]
