"""Fencing against the real broker: a partition's new producer fences the old one, readers
see committed records only, and recovery aims at a partition's last committed record."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ProducerFenced
from faust.types import TP

from app.faust_app import create_app
from app.settings import Settings
from streams.kafka.committed_reads import last_record_offsets
from streams.kafka.fencing import PartitionWriters
from tests.integration.harness import read_topic

pytestmark = pytest.mark.integration

BOOTSTRAP = "127.0.0.1:9092"


async def new_topic(partitions: int = 2) -> str:
    topic = f"fencing-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


def transactional_producer() -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"fencing-{uuid.uuid4().hex[:8]}")


async def committed_then_open(topic: str, committed: list[bytes]) -> AIOKafkaProducer:
    """A transactional producer that committed `committed` to partition 0 and began another transaction."""
    producer = transactional_producer()
    await producer.start()
    await producer.begin_transaction()
    for value in committed:
        await producer.send_and_wait(topic, value, partition=0)
    await producer.commit_transaction()
    await producer.begin_transaction()
    return producer


async def test_the_new_owner_fences_a_paused_owner_whose_writes_are_never_read() -> None:
    topic, prefix = await new_topic(), f"fencing-{uuid.uuid4().hex[:8]}"
    paused, owner = PartitionWriters(BOOTSTRAP, prefix), PartitionWriters(BOOTSTRAP, prefix)
    await paused.own({0, 1})
    before = paused.writer(0)
    await before.begin_transaction()
    await before.send_and_wait(topic, b"before the pause", partition=0)
    await before.commit_transaction()
    zombie = paused.writer(0)
    await zombie.begin_transaction()
    await zombie.send_and_wait(topic, b"in flight when paused", partition=0)

    await owner.own({0})  # the group gave partition 0 to another worker while this one was stopped
    with pytest.raises(ProducerFenced):
        await zombie.send_and_wait(topic, b"after the resume", partition=0)
    with pytest.raises(ProducerFenced):
        await zombie.commit_transaction()
    await paused.abort(0, ProducerFenced())
    writer = owner.writer(0)
    await writer.begin_transaction()
    await writer.send_and_wait(topic, b"the new owner's", partition=0)
    await writer.commit_transaction()
    # Partition 1 was not taken over: its producer goes on.
    other = paused.writer(1)
    await other.begin_transaction()
    await other.send_and_wait(topic, b"partition 1", partition=1)
    await other.commit_transaction()
    await paused.close()
    await owner.close()

    values = [(r.partition, r.value) for r in await read_topic(BOOTSTRAP, topic, partitions=2)]
    assert values == [(0, b"before the pause"), (0, b"the new owner's"), (1, b"partition 1")]


async def test_a_fenced_producer_closes_without_leaving_an_error_unretrieved() -> None:
    """A worker resumed after a pause fails its batch's sends and drops the producer. The
    failures aiokafka leaves unawaited are not logged as a bug ("Future exception was never
    retrieved"); any other unretrieved failure still reaches the loop's handler."""
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        topic, prefix = await new_topic(), f"fencing-{uuid.uuid4().hex[:8]}"
        paused, owner = PartitionWriters(BOOTSTRAP, prefix), PartitionWriters(BOOTSTRAP, prefix)
        await paused.own({0})
        zombie = paused.writer(0)
        await zombie.begin_transaction()
        await zombie.send_and_wait(topic, b"in flight when paused", partition=0)
        await owner.own({0})
        # A partition new to the transaction: the coordinator refuses it, which ends aiokafka's
        # sender task as well as the send.
        with pytest.raises(ProducerFenced) as fenced:
            await zombie.send_and_wait(topic, b"after the resume", partition=1)
        await paused.abort(0, fenced.value)
        await owner.close()
        del zombie, fenced
        gc.collect()
        await asyncio.sleep(0)
        assert [context["message"] for context in unretrieved] == []
        loop.create_future().set_exception(ValueError("a bug of ours"))
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert [str(context["exception"]) for context in unretrieved] == ["a bug of ours"]


async def test_recovery_aims_at_the_last_committed_record_past_markers_and_aborted_ones() -> None:
    topic = await new_topic(partitions=3)
    producer = await committed_then_open(topic, [b"kept", b"kept too"])
    try:
        for n in range(100):  # more aborted records than the first look back covers
            await producer.send(topic, b"aborted %d" % n, partition=0)
        await producer.send_and_wait(topic, b"aborted", partition=1)
        await producer.abort_transaction()
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(3)]
    reader = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, isolation_level="read_committed")
    await reader.start()
    try:
        ends = await reader.end_offsets(tps)
    finally:
        await reader.stop()
    # Two records and a commit marker, 100 aborted records and an abort marker; one aborted and its marker.
    assert [ends[tp] for tp in tps] == [104, 2, 0]
    found = await last_record_offsets([BOOTSTRAP], {tp: end for tp, end in ends.items() if end})
    assert found == {tps[0]: 1, tps[1]: -1}


async def test_recovery_fences_the_partitions_writers_then_ends_at_the_last_commit(tmp_path: Path) -> None:
    topic = await new_topic(partitions=1)
    producer = await committed_then_open(topic, [b"state", b"checkpoint"])
    steps: list[str] = []
    try:
        await producer.send_and_wait(topic, b"in flight when killed", partition=0)  # never committed

        class LastStableOffsets:  # what Faust's read_committed consumer reports: records and the marker
            async def highwaters(self, *tps: TP) -> dict[TP, int]:
                steps.append("read the end")
                return {tp: 3 for tp in tps}

        async def fence(tps: set[TP]) -> None:
            steps.append(f"fenced {sorted(tp.partition for tp in tps)}")

        app = create_app(Settings.from_env({"TIDEMAIL_DATA_DIR": str(tmp_path)}))
        app.tables.fence_writers = fence  # type: ignore[attr-defined]
        highwaters: Counter[TP] = Counter()
        await app.tables.recovery._build_highwaters(LastStableOffsets(), {TP(topic, 0)}, highwaters, "active")  # type: ignore[attr-defined, arg-type]
        assert highwaters == {TP(topic, 0): 1}
        # A paused owner could otherwise commit past the end after it was read.
        assert steps == ["fenced [0]", "read the end"]
    finally:
        await producer.stop()


class Earliest:
    """What Faust's consumer reports as each partition's first offset: nothing compacted away."""

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}


async def recovered_as_active(tmp_path: Path, tp: TP, last: int) -> tuple[Any, Any]:
    """A worker's `users` table and recovery with no local state, after recovery's step that
    restores what `tp` lacks up to its last committed record `last`."""
    app = create_app(Settings.from_env({"TIDEMAIL_DATA_DIR": str(tmp_path)}))
    table = app.tables["users"]
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    recovery.add_active(table, tp)
    recovery.active_highwaters[tp] = last
    await recovery._build_offsets(Earliest(), recovery.active_tps, recovery.active_offsets, "active")
    return table, recovery


async def test_a_partition_with_no_local_state_is_restored_in_bulk_from_committed_records_only(
    tmp_path: Path,
) -> None:
    topic = await new_topic(partitions=1)
    producer = transactional_producer()
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(25_000):
                await producer.send(topic, f"state {n}".encode(), key=f"user-{n % 1_000}".encode(), partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"user-1", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"last", key=b"user-2", partition=0)
    finally:
        await producer.stop()
    tp = TP(topic, 0)
    # The records, a commit marker, the aborted record and its marker, then "last".
    last = 25_000 + 3
    table, recovery = await recovered_as_active(tmp_path, tp, last)

    # Faust's own recovery reads from here: nothing is left.
    assert recovery.active_offsets[tp] == last
    assert table.data.persisted_offset(tp) == last
    db = table.data._db_for_partition(0)
    assert db[b"user-1"] == f"state {25_000 - 999}".encode()
    assert db[b"user-2"] == b"last"


async def test_a_partition_a_few_records_behind_is_restored_by_the_workers_own_reader(tmp_path: Path) -> None:
    topic = await new_topic(partitions=1)
    producer = transactional_producer()
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(5):
                await producer.send(topic, f"state {n}".encode(), key=f"user-{n}".encode(), partition=0)
    finally:
        await producer.stop()
    tp = TP(topic, 0)
    table, recovery = await recovered_as_active(tmp_path, tp, 4)

    # Nothing is left for Faust's per-record loop.
    assert recovery.active_offsets[tp] == 4
    assert table.data.persisted_offset(tp) == 4
    assert table.data._db_for_partition(0)[b"user-4"] == b"state 4"
