"""Jobs waiting for their instant on the deliverer's clock, and the queue senders take them
from once it comes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from streams.core.clock import Clock
from streams.delivery.pending import Pending
from streams.delivery.schedule import Schedule

# How often the scheduler looks at the clock at the least: a test may move it at any time.
TICK_S = 0.2


class DueJobs:
    """A schedule of jobs (for `send_at`, or for a retry's backoff) that one task, `run`,
    moves into a queue as each falls due."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._schedule: Schedule[Pending] = Schedule()
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._wake = asyncio.Event()

    def add(self, due_ms: int, pending: Pending) -> None:
        self._schedule.add(due_ms, pending)
        self._wake.set()

    def remove_from(self, partitions: set[int]) -> list[Pending]:
        """Take the waiting jobs of `partitions` off the schedule (they were revoked)."""
        return self._schedule.remove_where(lambda p: p.partition in partitions)

    def remove_where(self, matches: Callable[[Pending], bool]) -> list[Pending]:
        """Take the waiting jobs `matches` accepts off the schedule (an erased user's)."""
        return self._schedule.remove_where(matches)

    async def next(self) -> Pending | None:
        """The next due job, or None after a tick without one (so a sender can see it should stop)."""
        try:
            return await asyncio.wait_for(self._queue.get(), TICK_S)
        except TimeoutError:
            return None

    async def run(self) -> None:
        while True:
            now = self._clock.now_ms()
            for pending in self._schedule.pop_due(now):
                self._queue.put_nowait(pending)
            next_due = self._schedule.next_due_ms()
            wait = TICK_S if next_due is None else min(TICK_S, max(0, next_due - now) / 1000)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
