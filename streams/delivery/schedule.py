"""Bookkeeping for work that finishes out of order: what is due when, and how far a
partition may be committed."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Schedule(Generic[T]):
    """Items waiting for their due instant, earliest first; ties keep arrival order."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due_ms: int, item: T) -> None:
        heapq.heappush(self._heap, (due_ms, next(self._arrivals), item))

    def pop_due(self, now_ms: int) -> list[T]:
        """Remove and return every item due at or before `now_ms`."""
        due: list[T] = []
        while self._heap and self._heap[0][0] <= now_ms:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def next_due_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def remove_where(self, matches: Callable[[T], bool]) -> list[T]:
        """Remove and return the items `matches` accepts (a revoked partition's jobs, say)."""
        removed = [entry[2] for entry in self._heap if matches(entry[2])]
        if removed:
            self._heap = [entry for entry in self._heap if not matches(entry[2])]
            heapq.heapify(self._heap)
        return removed


class OffsetTracker:
    """Offsets read but not yet finished, per partition.

    A partition may be committed up to its earliest unfinished offset (or one past the last
    offset read when none is unfinished): after a restart everything not finished is read
    again, and nothing finished before the earliest unfinished one is.
    """

    def __init__(self) -> None:
        self._open: dict[int, list[int]] = {}
        self._done: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}

    def started(self, partition: int, offset: int) -> None:
        heapq.heappush(self._open.setdefault(partition, []), offset)
        self._done.setdefault(partition, set())
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finished(self, partition: int, offset: int) -> None:
        if partition in self._done:
            self._done[partition].add(offset)

    def position(self, partition: int) -> int | None:
        """Where a consumer may commit `partition`, or None if nothing was read from it."""
        if partition not in self._next:
            return None
        heap, done = self._open[partition], self._done[partition]
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))
        return heap[0] if heap else self._next[partition]

    def unfinished(self) -> int:
        """Jobs held in memory across every partition: what the pending cap bounds."""
        return sum(len(heap) - len(self._done[p]) for p, heap in self._open.items())

    def forget(self, partition: int) -> None:
        """Drop a partition this process no longer owns."""
        self._open.pop(partition, None)
        self._done.pop(partition, None)
        self._next.pop(partition, None)
