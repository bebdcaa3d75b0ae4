from __future__ import annotations

from typing import Any

from streams.core.clock import Clock
from streams.kafka.timers import DueTimers

UNUSED: Any = None


class TimerIndex:
    """The store's timer index alone: entries `(due_ms, user_id)` per partition, earliest first."""

    def __init__(self, entries: dict[int, list[tuple[int, str]]]) -> None:
        self._entries = entries

    def due_timers(self, partition: int, upto_ms: int, limit: int) -> list[tuple[int, str]]:
        return [entry for entry in self._entries.get(partition, []) if entry[0] <= upto_ms][:limit]


def timers(index: TimerIndex, batch_users: int) -> DueTimers:
    store: Any = index
    return DueTimers(
        store=store, processor=UNUSED, committer=UNUSED, states=UNUSED, clock=Clock(), batch_users=batch_users
    )


def test_a_tick_takes_its_budget_over_all_partitions_earliest_first_and_knows_more_is_due() -> None:
    backlog = TimerIndex({p: [(due, f"u{p}-{due}") for due in range(1_000)] for p in range(4)})
    due_timers = timers(backlog, batch_users=100)
    due = due_timers.due({0, 1, 2, 3})
    assert {p: len(entries) for p, entries in due.items()} == {0: 25, 1: 25, 2: 25, 3: 25}
    assert due[2][:2] == [(0, "u2-0"), (1, "u2-1")]
    assert due_timers.more_due(due, partitions=4)


def test_a_tick_that_took_everything_due_waits_for_the_next_interval() -> None:
    few = TimerIndex({0: [(5, "ann")], 1: [(7, "bob"), (9, "cy")]})
    due_timers = timers(few, batch_users=100)
    due = due_timers.due({0, 1, 2})
    assert due == {0: [(5, "ann")], 1: [(7, "bob"), (9, "cy")]}
    assert not due_timers.more_due(due, partitions=3)
