"""Kafka's default partitioner, and forwarding events that arrive on the wrong partition."""

from __future__ import annotations

import pytest

from streams.core.partitioning import REROUTED_FROM_HEADER, Partitioner, murmur2, partition_of
from tests.factories import event_doc
from tests.unit.core.support import Store, processor, record, signup


# From the Java client's UtilsTest.testMurmur2, as signed 32-bit ints.
@pytest.mark.parametrize(
    ("key", "java"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_the_java_clients(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF


def test_partitions_spread_and_are_remembered_per_user() -> None:
    place = Partitioner(8, remembered=10)
    placed = [place(f"u{n}") for n in range(200)]
    assert set(placed) == set(range(8))
    assert placed == [partition_of(f"u{n}".encode(), 8) for n in range(200)]


def home_and_elsewhere(user_id: str, partitions: int) -> tuple[int, int]:
    home = partition_of(user_id.encode(), partitions)
    return home, (home + 1) % partitions


def test_an_event_on_the_wrong_partition_is_forwarded_unprocessed() -> None:
    home, elsewhere = home_and_elsewhere("u1", 8)
    misplaced = record(7, signup("u1"), partition=elsewhere)
    misplaced.headers = [("trace", b"abc")]
    result = processor(partitions=8).process({elsewhere: [misplaced]}, Store().load)
    [reroute] = result.outputs.reroutes
    assert (reroute.record, reroute.user_id, reroute.partition) == (misplaced, "u1", home)
    assert not result.outputs.jobs
    assert not result.changes.states[elsewhere]
    # The input offset still advances: the event is handed on, not left behind.
    assert result.changes.last_offsets[elsewhere] == 7


def test_an_event_on_its_users_partition_is_processed() -> None:
    home, _ = home_and_elsewhere("u1", 8)
    result = processor(partitions=8).process({home: [record(0, signup("u1"), partition=home)]}, Store().load)
    assert not result.outputs.reroutes
    assert len(result.outputs.jobs) == 1


def test_an_invalid_record_is_dead_lettered_where_it_arrived() -> None:
    _, elsewhere = home_and_elsewhere("u1", 8)
    broken = record(0, b"{broken", key=b"u1", partition=elsewhere)
    result = processor(partitions=8).process({elsewhere: [broken]}, Store().load)
    assert not result.outputs.reroutes
    assert [dead.kind for dead in result.outputs.dead_letters] == ["invalid_event"]


def test_a_forwarded_event_still_misplaced_is_dead_lettered_not_forwarded_again() -> None:
    home, elsewhere = home_and_elsewhere("u1", 8)
    forwarded = record(3, event_doc("click", "u1"), partition=elsewhere)
    forwarded.headers = [(REROUTED_FROM_HEADER, b"events:%d:9" % home)]
    result = processor(partitions=8).process({elsewhere: [forwarded]}, Store().load)
    assert not result.outputs.reroutes
    [dead] = result.outputs.dead_letters
    assert dead.kind == "misrouted"
    assert f"belongs in {home}" in dead.reason
