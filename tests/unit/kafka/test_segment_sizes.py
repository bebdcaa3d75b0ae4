from __future__ import annotations

from collections import Counter
from typing import Any

from streams.kafka.segment_sizes import SegmentSizes, encode_sizes
from streams.kafka.store import SEGMENT_SIZES_KEY
from tests.unit.kafka.fakes import FakeStore


def owning(sizes: dict[int, Counter[str]]) -> SegmentSizes:
    store: Any = FakeStore()
    for partition, counts in sizes.items():
        store.write(partition, {SEGMENT_SIZES_KEY: encode_sizes(counts)}, None)
    book = SegmentSizes()
    book.load(store, [0, 1, 2])
    return book


def test_sizes_after_a_batch_add_entries_and_subtract_exits_of_the_partitions_it_touched() -> None:
    book = owning({0: Counter(vip=3, lapsed=2), 1: Counter(vip=1)})
    moves = {(0, "entered"): Counter(vip=2, new=1), (0, "exited"): Counter(lapsed=2), (2, "entered"): Counter(vip=1)}
    assert book.after(moves) == {0: Counter(vip=5, lapsed=0, new=1), 2: Counter(vip=1)}


def test_sizes_change_only_when_the_batch_is_adopted() -> None:
    book = owning({0: Counter(vip=3), 1: Counter(vip=1)})
    after = book.after({(0, "exited"): Counter(vip=1)})
    assert book.totals() == Counter(vip=4)
    book.update(after)
    assert book.totals() == Counter(vip=3)
    # A batch retried after a failure counts from the adopted sizes, not twice.
    assert book.after({(0, "exited"): Counter(vip=1)}) == {0: Counter(vip=1)}


def test_taking_over_partitions_starts_from_their_stored_sizes_only() -> None:
    book = owning({0: Counter(vip=3), 1: Counter(vip=1), 3: Counter(vip=100)})
    assert book.totals() == Counter(vip=4)
    book.clear()
    assert book.totals() == Counter()


def test_stored_sizes_are_a_json_object() -> None:
    assert encode_sizes(Counter(vip=2, lapsed=0)) == b'{"vip":2,"lapsed":0}'
