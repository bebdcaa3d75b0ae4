"""Whether a worker is ready for traffic (`GET /ready`), as opposed to alive (`GET /health`):
it owns partitions, no rebalance or table recovery is under way, and it is not far behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streams.consumer_lag import LAG_INTERVAL_S, ConsumerLag
from streams.kafka.ownership import PartitionOwnership

# A lag measured longer ago than this is unknown (the broker has not answered since).
STALE_AFTER_S = 5 * LAG_INTERVAL_S


class Readiness:
    """The worker's readiness, and why not."""

    def __init__(
        self,
        *,
        ownership: PartitionOwnership,
        lag: ConsumerLag,
        recovery_done: Callable[[], bool],
        max_lag_records: int,
    ) -> None:
        self._ownership = ownership
        self._lag = lag
        self._recovery_done = recovery_done
        self._max_lag_records = max_lag_records

    def reasons(self) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        owned = self._ownership.owned
        reasons = []
        if not owned:
            reasons.append("owns no partitions")
        if not self._recovery_done():
            reasons.append("a rebalance or table recovery is under way")
        measured_at = self._lag.measured_at
        unmeasured = sorted(owned - self._lag.by_partition.keys())
        if measured_at is None or time.monotonic() - measured_at > STALE_AFTER_S:
            reasons.append("lag unknown: the broker has not answered for its end offsets lately")
        elif unmeasured:
            reasons.append(f"lag not measured yet for partitions {unmeasured}")
        elif (lag := self.lag_records()) > self._max_lag_records:
            reasons.append(f"{lag} records behind, over TIDEMAIL_READY_MAX_LAG_RECORDS={self._max_lag_records}")
        return reasons

    def lag_records(self) -> int:
        owned = self._ownership.owned
        return sum(records for partition, records in self._lag.by_partition.items() if partition in owned)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Ready or not, and the body of `GET /ready`."""
        reasons = self.reasons()
        body = {
            "status": "not_ready" if reasons else "ready",
            "owned_partitions": sorted(self._ownership.owned),
            "lag_records": self.lag_records(),
            "max_lag_records": self._max_lag_records,
            "reasons": reasons,
        }
        return not reasons, body
