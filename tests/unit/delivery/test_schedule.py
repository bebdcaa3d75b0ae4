from __future__ import annotations

from streams.delivery.schedule import OffsetTracker, Schedule


def test_due_items_come_out_earliest_first_and_ties_in_arrival_order() -> None:
    schedule: Schedule[str] = Schedule()
    for due, name in [(30, "late"), (10, "a"), (20, "b"), (10, "a2")]:
        schedule.add(due, name)
    assert schedule.next_due_ms() == 10
    assert schedule.pop_due(5) == []
    assert schedule.pop_due(20) == ["a", "a2", "b"]
    assert schedule.next_due_ms() == 30
    assert len(schedule) == 1


def test_removing_a_revoked_partitions_items_keeps_the_rest_in_order() -> None:
    schedule: Schedule[tuple[int, str]] = Schedule()
    for due, item in [(3, (0, "x")), (1, (1, "y")), (2, (0, "z")), (4, (1, "w"))]:
        schedule.add(due, item)
    assert sorted(schedule.remove_where(lambda item: item[0] == 1)) == [(1, "w"), (1, "y")]
    assert schedule.pop_due(10) == [(0, "z"), (0, "x")]


def test_a_partition_commits_up_to_its_earliest_unfinished_offset() -> None:
    tracker = OffsetTracker()
    assert tracker.position(0) is None
    for offset in range(5):
        tracker.started(0, offset, 1_000 + offset)
    tracker.started(1, 7, 5_000)
    assert tracker.unfinished() == 6
    tracker.finished(0, 0)
    tracker.finished(0, 2)
    tracker.finished(0, 4)
    assert tracker.position(0) == 1  # 2 and 4 are done, but 1 is still waiting
    assert tracker.anchor_ms(0) == 1_001  # where a restart starts reading, in time
    tracker.finished(0, 1)
    assert tracker.position(0) == 3
    tracker.finished(0, 3)
    assert tracker.position(0) == 5  # nothing open: one past the last read
    assert tracker.anchor_ms(0) == 1_004  # and the last read's timestamp
    assert (tracker.position(0), tracker.position(1)) == (5, 7)
    assert tracker.unfinished() == 1


def test_a_forgotten_partition_has_no_position() -> None:
    tracker = OffsetTracker()
    tracker.started(2, 10, 1_000)
    tracker.forget(2)
    assert (tracker.position(2), tracker.anchor_ms(2)) == (None, None)
    assert tracker.unfinished() == 0
