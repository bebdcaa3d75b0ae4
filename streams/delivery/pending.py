"""What a deliverer holds, without I/O: the partitions it owns, and the jobs read from them
and not finished yet."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.delivery.messages import Job
from streams.delivery.schedule import OffsetTracker


@dataclass(eq=False, slots=True)
class Pending:
    """A job read from `partition` at `offset` and not finished yet."""

    partition: int
    offset: int
    job: Job
    attempts: int = 0
    revoked: bool = False


class PendingJobs:
    """Unfinished jobs by id (a second record of one is a duplicate at once), by offset (how
    far each partition may be committed), and those being sent right now."""

    def __init__(self) -> None:
        self.partitions: set[int] = set()
        self._offsets = OffsetTracker()
        self._held: dict[str, Pending] = {}
        self._sending: set[Pending] = set()

    @property
    def unfinished(self) -> int:
        """Records read and not finished, across every partition: what the pending cap bounds."""
        return self._offsets.unfinished()

    def read(self, partition: int, offset: int, timestamp_ms: int) -> None:
        self._offsets.started(partition, offset, timestamp_ms)

    def skipped(self, partition: int, offset: int) -> None:
        """A record that holds no job to send (invalid, or a duplicate) is finished at once."""
        self._offsets.finished(partition, offset)

    def holds(self, job_id: str) -> bool:
        return job_id in self._held

    def hold(self, pending: Pending) -> None:
        self._held[pending.job.job_id] = pending

    def finished(self, pending: Pending) -> None:
        """Its outcome is published: its offset may be committed past."""
        self._held.pop(pending.job.job_id, None)
        self._offsets.finished(pending.partition, pending.offset)

    def sending(self, pending: Pending) -> None:
        self._sending.add(pending)

    def not_sending(self, pending: Pending) -> None:
        self._sending.discard(pending)

    def sending_from(self, partitions: set[int]) -> bool:
        return any(p.partition in partitions for p in self._sending)

    def revoke(self, partitions: set[int], waiting: Iterable[Pending]) -> None:
        """Mark the jobs of `partitions` revoked, so no sender takes them up, and let go of
        `waiting`, those of them no longer scheduled."""
        for pending in self._held.values():
            if pending.partition in partitions:
                pending.revoked = True
        for pending in waiting:
            self._held.pop(pending.job.job_id, None)

    def position(self, partition: int) -> int | None:
        """Where `partition` may be committed: its earliest unfinished offset."""
        return self._offsets.position(partition)

    def idle(self, partition: int) -> bool:
        """Whether every job read from `partition` is finished."""
        return self._offsets.idle(partition)

    def anchor_ms(self, partition: int) -> int | None:
        """The Kafka timestamp of the record at `position`: a restart reads nothing older."""
        return self._offsets.anchor_ms(partition)

    def own(self, partitions: set[int]) -> None:
        self.partitions |= partitions

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this process no longer owns, with whatever of theirs is left."""
        for partition in partitions:
            self._offsets.forget(partition)
        self._held = {job_id: p for job_id, p in self._held.items() if p.partition not in partitions}
        self.partitions -= partitions
