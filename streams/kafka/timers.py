"""Firing due timers: re-evaluating users whose conditions can flip with no new event.

Each partition keeps an index of when each user is next due for a check (time-based
segment conditions, propensity probes, flow waits). Every tick the worker fires the
entries now due as one batch, which becomes durable exactly like a batch of events.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams import metrics
from streams.core.batch import BatchResult, TimerEntry
from streams.core.clock import Clock
from streams.core.processing import BatchProcessor
from streams.kafka.committer import BatchCommitter
from streams.kafka.store import UserStore
from streams.kafka.users import UserStates


class DueTimers:
    """Finds the owned partitions' due timer entries and fires them as one durable batch."""

    def __init__(
        self,
        *,
        store: UserStore,
        processor: BatchProcessor,
        committer: BatchCommitter,
        states: UserStates,
        clock: Clock,
        batch_users: int,
    ) -> None:
        self._store = store
        self._processor = processor
        self._committer = committer
        self._states = states
        self._clock = clock
        self._batch_users = batch_users

    def due(self, partitions: Iterable[int]) -> dict[int, list[TimerEntry]]:
        """Each partition's entries due now (at most `batch_users` of each), earliest first."""
        now_ms = self._clock.now_ms()
        # Every partition's due entries in one batch: one round trip to the broker,
        # not one per partition, keeps timers within a tick of their instant.
        return {
            partition: entries
            for partition in sorted(partitions)
            if (entries := self._store.due_timers(partition, now_ms, self._batch_users))
        }

    async def fire(self, due: dict[int, list[TimerEntry]]) -> BatchResult:
        """Re-evaluate the users of `due` and make the outcome durable. On failure the
        entries stay due, and the rewind reads back outputs already published."""
        result = self._processor.on_clock(due, self._states.load)
        await self._committer.commit(result)
        metrics.TIMER_USERS.inc(sum(len(entries) for entries in due.values()))
        metrics.TIMER_LATENESS.observe(result.counts.timer_lateness_ms / 1000)
        return result
