"""A tick fired a slice at a time (the worker lets its API run between slices) comes to the
same result as the tick fired at once."""

from __future__ import annotations

import itertools

from app.tools.generator import EventGenerator
from streams.core.batch import BatchResult, InputRecord
from streams.core.processing import BatchProcessor
from tests.factories import BASE_TS
from tests.unit.core.support import Store, processor

HOUR_MS = 3_600_000


def _world() -> tuple[BatchProcessor, Store, list[int]]:
    now = [BASE_TS]
    core, store = processor(clock_ms=lambda: now[0]), Store()
    messages = EventGenerator(300, seed=5, broken_share=0.0).messages(clock_ms=lambda: now[0])
    records = [
        InputRecord(0, offset, key, value, now[0])
        for offset, (key, value) in enumerate(itertools.islice(messages, 1_500))
    ]
    store.save(core.process({0: records}, store.load))
    # Two hours on: carts are abandoned and welcome steps fall due.
    now[0] += 2 * HOUR_MS
    return core, store, now


def test_slices_of_a_tick_come_to_the_tick_fired_at_once() -> None:
    whole_core, whole_store, now = _world()
    due = {0: [(now[0], user) for (_, user) in sorted(whole_store.states)]}
    whole = whole_core.on_clock(due, whole_store.load)

    sliced_core, sliced_store, _ = _world()
    sliced = BatchResult()
    fired = list(sliced_core.on_clock_in_slices(due, sliced_store.load, sliced, slice_users=7))

    assert sum(fired) == len(due[0]) and max(fired) == 7 and len(fired) == -(-len(due[0]) // 7)
    assert whole.outputs.jobs, "the world has no job due: the comparison would prove little"
    assert sliced.outputs.jobs == whole.outputs.jobs
    assert sliced.changes == whole.changes
    assert sliced.outputs.segment_transitions == whole.outputs.segment_transitions
