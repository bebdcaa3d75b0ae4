"""What the deliveries topic says about each job, without I/O: the durable record of which
jobs were claimed and which finished, for the partitions a deliverer owns.

Before its SMTP transaction a job's claim is published to the deliveries topic (outcome
`claimed`) and acknowledged by the broker; its outcome follows. A transient failure
publishes `released` before the retry waits. So the last record of a job on the topic says
whether it may be sent: no record or `released`, yes; `claimed`, it may have been sent and
is not sent again (`unconfirmed`); an outcome, it is finished. A deliverer folds the topic
into a `Ledger` when it is given a partition and adds its own records as it publishes them;
Redis is only the fast path (see docs/delivery.md, At most once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from streams.delivery.messages import Job, outcome_record

# Records on the deliveries topic that are no outcome: a claim, and a claim given up.
CLAIMED: Final = "claimed"
RELEASED: Final = "released"
# What the ledger keeps of any outcome (sent, bounced, failed, unconfirmed).
FINISHED: Final = "finished"

# Jobs are stamped by the worker's clock and claims by the deliverer's: a rebuild reads this
# much further back than the earliest job it can be handed, in case the two disagree.
CLOCK_SKEW_MS: Final = 5 * 60_000


def claim_record(job: Job, attempt: int, at_ms: int) -> dict[str, Any]:
    """The record published, and acknowledged, before attempt `attempt` of the job."""
    return outcome_record(job, CLAIMED, attempt, at_ms, None, None)


def release_record(job: Job, attempt: int, at_ms: int, reason: str) -> dict[str, Any]:
    """The record published when attempt `attempt` certainly sent nothing and is retried later."""
    return outcome_record(job, RELEASED, attempt, at_ms, None, reason)


def read_record(value: bytes | None) -> tuple[str, str] | None:
    """`(job_id, outcome)` of a deliveries-topic record, or None if it is not one of ours."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    job_id, outcome = doc.get("job_id"), doc.get("outcome")
    if not isinstance(job_id, str) or not isinstance(outcome, str):
        return None
    return job_id, outcome


@dataclass(slots=True)
class Entry:
    """A job's last state on the topic; `first_ms` (its first record's timestamp) orders
    pruning, `at_ms` is when the state was recorded."""

    state: str
    first_ms: int
    at_ms: int


class Ledger:
    """Per owned partition, the last state of every job the deliveries topic holds from the
    partition's anchor on (see `CLOCK_SKEW_MS` and the deliverer's consumer)."""

    def __init__(self) -> None:
        self._partitions: dict[int, dict[str, Entry]] = {}
        # Bumped when a partition is let go, so a rebuild that was reading while the
        # partition went away (and perhaps came back) is not installed.
        self._generations: dict[int, int] = {}

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._partitions.values())

    def loaded(self, partition: int) -> bool:
        return partition in self._partitions

    def generation(self, partition: int) -> int:
        return self._generations.get(partition, 0)

    def load(self, partition: int, generation: int, records: Iterable[tuple[str, str, int]]) -> bool:
        """Install a partition from its records `(job_id, outcome, timestamp_ms)` in topic
        order, unless it was let go since `generation` was read; say whether it was."""
        if generation != self.generation(partition) or partition in self._partitions:
            return False
        self._partitions[partition] = {}
        for job_id, outcome, timestamp_ms in records:
            self.apply(partition, job_id, outcome, timestamp_ms)
        return True

    def apply(self, partition: int, job_id: str, outcome: str, timestamp_ms: int) -> None:
        """A record of the job, read from the topic or just acknowledged."""
        jobs = self._partitions.get(partition)
        if jobs is None:
            return  # let go meanwhile: the next owner reads the record from the topic
        state = outcome if outcome in (CLAIMED, RELEASED) else FINISHED
        entry = jobs.get(job_id)
        if entry is None:
            jobs[job_id] = Entry(state, timestamp_ms, timestamp_ms)
        else:
            entry.state, entry.at_ms = state, timestamp_ms

    def get(self, partition: int, job_id: str) -> Entry | None:
        jobs = self._partitions.get(partition)
        return None if jobs is None else jobs.get(job_id)

    def prune(self, partition: int, before_ms: int) -> int:
        """Forget jobs first recorded before `before_ms` (no job this partition can still
        hand over is that old); return how many. Entries are kept in the order first seen,
        which is time order up to the producers' clocks."""
        jobs = self._partitions.get(partition)
        if not jobs:
            return 0
        stale = []
        for job_id, entry in jobs.items():
            if entry.first_ms >= before_ms:
                break
            stale.append(job_id)
        for job_id in stale:
            del jobs[job_id]
        return len(stale)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._generations[partition] = self.generation(partition) + 1
