"""A batch of events processed a slice at a time (the worker lets its API run between
slices) comes to the same result as the batch processed at once."""

from __future__ import annotations

import itertools

from app.tools.generator import EventGenerator
from streams.core.batch import BatchResult, InputRecord
from tests.factories import BASE_TS
from tests.unit.core.support import Store, processor


def _batch() -> dict[int, list[InputRecord]]:
    messages = EventGenerator(300, seed=11, broken_share=0.02).messages(clock_ms=lambda: BASE_TS)
    by_partition: dict[int, list[InputRecord]] = {0: [], 1: []}
    for offset, (key, value) in enumerate(itertools.islice(messages, 2_000)):
        partition = offset % 2
        by_partition[partition].append(InputRecord(partition, offset, key, value, BASE_TS))
    return by_partition


def test_slices_of_a_batch_come_to_the_batch_processed_at_once() -> None:
    batch = _batch()
    whole_store = Store()
    whole = processor(clock_ms=lambda: BASE_TS).process(batch, whole_store.load)

    sliced_store, sliced = Store(), BatchResult()
    sliced_core = processor(clock_ms=lambda: BASE_TS)
    done = list(sliced_core.process_in_slices(batch, sliced_store.load, sliced, slice_records=64))

    assert sum(done) == 2_000 and max(done) == 64 and len(done) == 2 * -(-1_000 // 64)
    assert whole.outputs.jobs and whole.outputs.dead_letters, "the batch has no job or dead letter to compare"
    assert sliced.outputs == whole.outputs
    assert sliced.changes == whole.changes
    assert sliced.counts == whole.counts
