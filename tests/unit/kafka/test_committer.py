from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from streams.core.batch import BatchResult, InputRecord, StateChanges
from streams.core.segments import Transitions
from streams.core.state import UserState
from streams.core.state_cache import StateCache
from streams.core.state_codec import decode_state, encode_state
from streams.kafka.committer import BatchCommitter, changelog_items
from streams.kafka.fencing import PartitionsFenced
from streams.kafka.outputs import OutputPublisher, OutputTopics
from streams.kafka.segment_sizes import SegmentSizes
from streams.kafka.store import CHECKPOINT_KEY, SEGMENT_SIZES_KEY, Checkpoint, timer_key
from streams.kafka.users import UserStates
from tests.unit.kafka.fakes import FakeClients, FakeProducer, FakeStore, FakeWriters

TOPICS = OutputTopics("events", "jobs", "changes", "dead", "erasures")


def test_changelog_items_hold_every_key_a_batch_changes_per_partition() -> None:
    ann, bob = UserState("ann"), UserState("bob")
    changes = StateChanges(
        states={0: {"ann": ann}, 1: {"bob": bob}},
        timer_removals={0: [(1_000, "ann")], 2: [(5_000, "cid")]},
        timer_additions={0: [(2_000, "ann")]},
    )
    items = changelog_items(changes, {0: Counter(vip=2)})
    assert items == {
        0: {
            b"ann": encode_state(ann),
            timer_key(1_000, "ann"): None,
            timer_key(2_000, "ann"): b"",
            SEGMENT_SIZES_KEY: b'{"vip":2}',
        },
        1: {b"bob": encode_state(bob)},
        2: {timer_key(5_000, "cid"): None},
    }


def test_a_timer_moved_away_and_back_in_one_batch_stays_indexed() -> None:
    changes = StateChanges(timer_removals={0: [(1_000, "ann")]}, timer_additions={0: [(1_000, "ann")]})
    assert changelog_items(changes, {}) == {0: {timer_key(1_000, "ann"): b""}}


def batch() -> BatchResult:
    result = BatchResult()
    result.changes.states = {0: {"ann": UserState("ann")}}
    result.changes.last_offsets = {0: 41}
    result.changes.segment_moves = {(0, "entered"): Counter(vip=1)}
    result.outputs.jobs = [{"job_id": "j1", "user_id": "ann"}]
    result.outputs.job_triggers = {"j1": InputRecord(0, 41, b"ann", b"{}", 0)}
    result.outputs.segment_transitions = [(0, Transitions("ann", 0, "e1", "v1", entered=["vip"]))]
    result.training.engagement_hours = [9]
    return result


def committer(
    producer: FakeProducer, store: Any, cache: StateCache, writers: FakeWriters | None = None
) -> tuple[BatchCommitter, SegmentSizes]:
    clients: Any = FakeClients(producer, writers)
    sizes = SegmentSizes()
    built = BatchCommitter(
        clients=clients,
        outputs=OutputPublisher("unused", TOPICS, max_record_bytes=10_000),
        events_topic=TOPICS.events,
        interactions_topic="interactions",
        store=store,
        states=UserStates(store, cache),
        sizes=sizes,
    )
    return built, sizes


async def test_a_committed_batch_is_in_the_changelog_rocksdb_and_bookkeeping() -> None:
    producer, store, cache, writers = FakeProducer(), FakeStore(), StateCache(10), FakeWriters()
    batch_committer, sizes = committer(producer, store, cache, writers)
    batch_committer.resume([0, 1])
    await batch_committer.commit(batch())
    # Outputs and changelog records in the partition's transaction; training records beside it.
    in_transaction = {(topic, partition): len(b.records) for topic, partition, b in writers.producers[0].sent}
    assert in_transaction == {("jobs", 0): 1, ("changes", 0): 1, ("users-changelog", 0): 3}
    assert writers.log == ["begin 0", "commit 0"]
    assert [(topic, partition) for topic, partition, _ in producer.sent] == [("interactions", 0)]
    assert decode_state(store.data[0][b"ann"]).user_id == "ann"
    assert orjson.loads(store.data[0][SEGMENT_SIZES_KEY]) == {"vip": 1}
    # Sent with the outputs, the checkpoint knows the output ends of the batches before.
    assert Checkpoint.decode(store.data[0][CHECKPOINT_KEY]) == Checkpoint(41, {})
    # RocksDB knows which changelog record it reflects: the last of the three.
    assert store.persisted_offsets == {0: 2}
    assert batch_committer.checkpoints == {0: Checkpoint(41, {}), 1: Checkpoint(None, {})}
    assert sizes.totals() == Counter(vip=1)
    assert cache.get(0, "ann") == UserState("ann")
    await batch_committer.commit(batch())
    assert Checkpoint.decode(store.data[0][CHECKPOINT_KEY]) == Checkpoint(41, {"jobs": 1, "changes": 1})


async def test_a_batch_whose_changelog_write_fails_is_aborted_and_changes_nothing_it_would_count_again() -> None:
    producer, store, cache = FakeProducer(), FakeStore(), StateCache(10)
    writers = FakeWriters(unreachable=frozenset({"users-changelog"}))
    batch_committer, sizes = committer(producer, store, cache, writers)
    batch_committer.resume([0])
    with pytest.raises(ConnectionError):
        await batch_committer.commit(batch())
    assert writers.log == ["begin 0", "abort 0"]
    assert store.data[0] == {}
    assert batch_committer.checkpoints == {0: Checkpoint(None, {})}
    assert sizes.totals() == Counter()
    assert len(cache) == 0


async def test_a_fenced_partition_is_left_as_it_was_and_the_others_of_the_batch_are_durable() -> None:
    producer, store, cache, writers = FakeProducer(), FakeStore(), StateCache(10), FakeWriters()
    writers.producers[1].fenced = True
    batch_committer, sizes = committer(producer, store, cache, writers)
    batch_committer.resume([0, 1])
    result = batch()
    result.changes.states[1] = {"bob": UserState("bob")}
    result.changes.last_offsets[1] = 7
    result.changes.segment_moves[(1, "entered")] = Counter(vip=1)
    with pytest.raises(PartitionsFenced) as fenced:
        await batch_committer.commit(result)
    assert fenced.value.partitions == {1}
    assert writers.dropped == [1]
    assert b"bob" not in store.data[1] and b"ann" in store.data[0]
    assert batch_committer.checkpoints[1] == Checkpoint(None, {})
    assert batch_committer.checkpoints[0].input_offset == 41
    assert sizes.totals() == Counter(vip=1)
    assert cache.get(1, "bob") is None and cache.get(0, "ann") == UserState("ann")
    with pytest.raises(PartitionsFenced):
        await batch_committer.commit(result)
