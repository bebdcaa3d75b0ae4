"""`GET /ready`'s decision: partitions owned, no rebalance or recovery under way, lag known and small."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from streams.consumer_lag import ConsumerLag
from streams.kafka.readiness import STALE_AFTER_S, Readiness


def readiness(owned: set[int], lag: dict[int, int] | None, recovery_done: bool = True) -> Readiness:
    measured = ConsumerLag("events")
    if lag is not None:
        measured.by_partition = lag
        measured.measured_at = time.monotonic()
    ownership: Any = SimpleNamespace(owned=frozenset(owned))
    return Readiness(ownership=ownership, lag=measured, recovery_done=lambda: recovery_done, max_lag_records=100)


def test_ready_with_partitions_owned_recovered_and_lag_at_most_the_threshold() -> None:
    ready, body = readiness({0, 1}, {0: 60, 1: 40}).report()
    assert ready
    assert body == {
        "status": "ready",
        "owned_partitions": [0, 1],
        "lag_records": 100,
        "max_lag_records": 100,
        "reasons": [],
    }


def test_not_ready_says_why() -> None:
    assert readiness(set(), {}).reasons() == ["owns no partitions"]
    assert readiness({0}, {0: 0}, recovery_done=False).reasons() == ["a rebalance or table recovery is under way"]
    assert readiness({0, 1}, {0: 60, 1: 41}).reasons() == [
        "101 records behind, over TIDEMAIL_READY_MAX_LAG_RECORDS=100"
    ]
    # Partitions given moments ago, not measured yet.
    assert readiness({0, 1, 2}, {0: 0}).reasons() == ["lag not measured yet for partitions [1, 2]"]
    ready, body = readiness({0}, None).report()
    assert not ready and body["status"] == "not_ready"
    assert body["reasons"] == ["lag unknown: the broker has not answered for its end offsets lately"]


def test_a_lag_the_broker_stopped_answering_for_is_unknown() -> None:
    stale = readiness({0}, {0: 0})
    stale._lag.measured_at = time.monotonic() - STALE_AFTER_S - 1
    assert stale.reasons() == ["lag unknown: the broker has not answered for its end offsets lately"]


def test_lag_of_partitions_no_longer_owned_does_not_count() -> None:
    assert readiness({0}, {0: 10, 1: 5_000}).lag_records() == 10
