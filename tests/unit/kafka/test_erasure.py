"""An erasure made durable by the shell: a tombstone for the state and every timer entry, a
marker named by a hash, the cached state gone, and an erasure record published once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from rocksdict import Options, Rdict

from streams.core.batch import BatchResult, Erasure, InputRecord, StateChanges
from streams.core.state import UserState
from streams.core.state_cache import StateCache
from streams.core.state_codec import encode_state
from streams.kafka.committer import BatchCommitter, changelog_items
from streams.kafka.outputs import ID_HEADER, OutputPublisher, OutputTopics
from streams.kafka.segment_sizes import SegmentSizes
from streams.kafka.store import UserStore, erasure_key, timer_key
from streams.kafka.users import UserStates
from tests.unit.kafka.fakes import FakeClients, FakeProducer, FakeWriters

TOPICS = OutputTopics("events", "jobs", "changes", "dead", "erasures")
ERASE_RECORD = InputRecord(0, 7, b"ann", b"{}", 0)


def erasure(user_id: str = "ann", erased_ms: int = 5_000) -> Erasure:
    return Erasure(ERASE_RECORD, user_id, "erase-1", erased_ms, 9_000, "crm")


def rocks_store(tmp_path: Path) -> UserStore:
    """A `UserStore` over real RocksDB partitions, in a stand-in for the Faust table."""
    dbs: dict[int, Rdict] = {}

    def db_for(partition: int) -> Rdict:
        if partition not in dbs:
            dbs[partition] = Rdict(str(tmp_path / f"p{partition}"), Options(raw_mode=True))
        return dbs[partition]

    offsets: dict[Any, int] = {}
    data = SimpleNamespace(_db_for_partition=db_for, set_persisted_offset=offsets.__setitem__)
    table = SimpleNamespace(data=data, changelog_topic=SimpleNamespace(get_topic_name=lambda: "users-changelog"))
    return UserStore(table, partitions=2)


def test_an_erased_users_key_is_a_tombstone_beside_its_marker_unless_they_came_back() -> None:
    back = UserState("bob", first_seen_ms=8_000)
    changes = StateChanges(
        states={0: {"bob": back}},
        erasures={0: {"ann": erasure("ann"), "bob": erasure("bob", 6_000)}},
    )
    assert changelog_items(changes, {}) == {
        0: {
            b"bob": encode_state(back),
            erasure_key("ann"): b"5000",
            b"ann": None,
            erasure_key("bob"): b"6000",
        }
    }
    assert b"ann" not in erasure_key("ann")


def test_the_store_finds_every_timer_entry_of_a_user_and_the_marker(tmp_path: Path) -> None:
    store = rocks_store(tmp_path)
    entries = {timer_key(due, user): b"" for due, user in [(1, "ann"), (2, "annie"), (3, "bob"), (9, "ann")]}
    store.write(0, {**entries, erasure_key("cid"): b"4000"}, None)
    assert store.timers_of(0, {"ann"}) == [(1, "ann"), (9, "ann")]
    assert store.timers_of(0, {"ann", "bob"}) == [(1, "ann"), (3, "bob"), (9, "ann")]
    assert store.erased_ms(0, "cid") == 4_000
    assert store.erased_ms(0, "ann") is None
    states = UserStates(store, StateCache(10))
    # An erased id not seen since loads as an empty state that remembers the erasure.
    assert states.load(0, "cid") == UserState("cid", erased_ms=4_000)
    assert states.load(0, "dan") is None


async def test_a_committed_erasure_leaves_no_state_timer_or_cached_copy_and_publishes_one_record(
    tmp_path: Path,
) -> None:
    store, cache, writers = rocks_store(tmp_path), StateCache(10), FakeWriters()
    producer = writers.producers[0]
    ann = UserState("ann", first_seen_ms=1_000, indexed_due_ms=3_000)
    store.write(0, {b"ann": encode_state(ann), timer_key(3_000, "ann"): b"", timer_key(8_000, "ann"): b""}, None)
    cache.put(0, "ann", ann)
    committer = BatchCommitter(
        clients=FakeClients(FakeProducer(), writers),  # type: ignore[arg-type]
        outputs=OutputPublisher("unused", TOPICS, max_record_bytes=10_000),
        events_topic="events",
        interactions_topic="interactions",
        store=store,
        states=UserStates(store, cache),
        sizes=SegmentSizes(),
    )
    committer.resume([0])
    result = BatchResult()
    result.changes.erasures = {0: {"ann": erasure()}}
    result.changes.timer_removals = {0: [(3_000, "ann")]}
    result.changes.last_offsets = {0: 7}
    await committer.commit(result)

    changelog = {r["key"]: r["value"] for t, _, b in producer.sent if t == "users-changelog" for r in b.records}
    assert changelog[b"ann"] is None
    assert changelog[timer_key(3_000, "ann")] is None and changelog[timer_key(8_000, "ann")] is None
    assert changelog[erasure_key("ann")] == b"5000"
    assert store.get(0, b"ann") is None and store.timers_of(0, {"ann"}) == []
    assert store.erased_ms(0, "ann") == 5_000
    assert cache.get(0, "ann") is None
    [record] = [r for t, _, b in producer.sent if t == "erasures" for r in b.records]
    assert record["key"] == b"ann" and record["headers"][ID_HEADER] == b"0:7:erasure"
    assert orjson.loads(record["value"])["erased_at"] == "1970-01-01T00:00:05.000Z"
    assert Counter(t for t, _, _ in producer.sent) == Counter({"erasures": 1, "users-changelog": 1})
    # The erasure record's end is in the checkpoint of the batch after it.
    following = BatchResult()
    following.changes.last_offsets = {0: 8}
    await committer.commit(following)
    assert committer.checkpoints[0].output_ends == {"erasures": 1}


async def test_an_erasure_record_published_before_a_crash_is_not_published_again() -> None:
    publisher = OutputPublisher("unused", TOPICS, max_record_bytes=10_000)
    publisher._published[0] = {"0:7:erasure"}
    result = BatchResult()
    result.changes.erasures = {0: {"ann": erasure()}}
    assert publisher.records(result) == {}
    assert publisher.suppressed == 1
