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
    """Offsets read but not yet finished, per partition, with each record's Kafka timestamp.

    A partition may be committed up to its earliest unfinished offset (or one past the last
    offset read when none is unfinished): after a restart everything not finished is read
    again, and nothing finished before the earliest unfinished one is. The timestamp of the
    record there is where a restart's reading starts in time (`anchor_ms`).
    """

    def __init__(self) -> None:
        self._open: dict[int, list[tuple[int, int]]] = {}
        self._done: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}
        self._last_ms: dict[int, int] = {}

    def started(self, partition: int, offset: int, timestamp_ms: int) -> None:
        heapq.heappush(self._open.setdefault(partition, []), (offset, timestamp_ms))
        self._done.setdefault(partition, set())
        if offset + 1 > self._next.get(partition, 0):
            self._next[partition] = offset + 1
            self._last_ms[partition] = timestamp_ms

    def finished(self, partition: int, offset: int) -> None:
        if partition in self._done:
            self._done[partition].add(offset)

    def position(self, partition: int) -> int | None:
        """Where a consumer may commit `partition`, or None if nothing was read from it."""
        earliest = self._earliest(partition)
        return None if earliest is None else earliest[0]

    def idle(self, partition: int) -> bool:
        """Whether records were read from `partition` and every one of them is finished."""
        earliest = self._earliest(partition)
        return earliest is not None and earliest[0] == self._next[partition]

    def anchor_ms(self, partition: int) -> int | None:
        """The timestamp of the record at `position`: of the earliest unfinished one, or of
        the last read when none is (the next one cannot be much older)."""
        earliest = self._earliest(partition)
        return None if earliest is None else earliest[1]

    def _earliest(self, partition: int) -> tuple[int, int] | None:
        if partition not in self._next:
            return None
        heap, done = self._open[partition], self._done[partition]
        while heap and heap[0][0] in done:
            done.discard(heapq.heappop(heap)[0])
        return heap[0] if heap else (self._next[partition], self._last_ms[partition])

    def unfinished(self) -> int:
        """Jobs held in memory across every partition: what the pending cap bounds."""
        return sum(len(heap) - len(self._done[p]) for p, heap in self._open.items())

    def forget(self, partition: int) -> None:
        """Drop a partition this process no longer owns."""
        self._open.pop(partition, None)
        self._done.pop(partition, None)
        self._next.pop(partition, None)
        self._last_ms.pop(partition, None)
