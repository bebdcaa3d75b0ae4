from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.tools.replay import REPLAYED_FROM_HEADER, Window, parse_instant, replayed_headers


def test_instants_are_rfc3339_and_a_bare_date_is_midnight_utc() -> None:
    assert parse_instant("2026-11-28T08:00:00Z") == 1795852800000
    assert parse_instant("2026-11-28T09:00:00+01:00") == 1795852800000
    assert parse_instant("2026-11-28") == 1795824000000
    with pytest.raises(ValueError, match=r"expected an RFC 3339 instant.*got 'yesterday'"):
        parse_instant("yesterday")


def test_a_window_includes_its_start_and_excludes_its_end() -> None:
    window = Window(10, 20)
    assert [window.holds(t) for t in (9, 10, 19, 20)] == [False, True, True, False]
    assert Window().holds(0) and Window(since_ms=5).holds(10**13)


def test_replayed_records_keep_their_own_headers_and_name_their_origin() -> None:
    record: Any = SimpleNamespace(
        topic="tidemail.dead-letter",
        partition=3,
        offset=41,
        headers=[("trace", b"t"), ("tidemail.kind", b"invalid_event"), ("tidemail.id", b"x")],
    )
    assert replayed_headers(record) == [("trace", b"t"), (REPLAYED_FROM_HEADER, b"tidemail.dead-letter:3:41")]
