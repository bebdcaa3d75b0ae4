"""The jobs consumer against a fake Kafka consumer: what it holds, dead-letters, pauses and commits."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from app.settings import Settings
from streams.core.clock import Clock
from streams.core.jobs import format_time
from streams.core.withdrawal import KIND_HEADER, WITHDRAWAL
from streams.delivery.consumer import JobConsumer
from streams.delivery.due import DueJobs
from streams.delivery.ledger import Ledger
from streams.delivery.pending import PendingJobs
from tests.unit.delivery.test_messages import job_doc

TOPIC = "jobs"
TP = TopicPartition(TOPIC, 0)


def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 1_000 + offset, 0, b"ann", value, None, 3, len(value), [])


def job(job_id: str) -> bytes:
    return orjson.dumps(job_doc(job_id=job_id))


class FakeConsumer:
    """Hands out `batches` one `getmany` at a time, then sets `stop`."""

    def __init__(self, batches: list[list[ConsumerRecord[bytes, bytes]]], stop: asyncio.Event) -> None:
        self.batches = batches
        self.stop = stop
        self.paused_tps: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        # Where fetching has got to: one past the last record handed out, unless set further.
        self.fetch_position = 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps -= set(tps)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if not self.batches:
            self.stop.set()
            return {}
        batch = self.batches.pop(0)
        self.fetch_position = max(self.fetch_position, *(r.offset + 1 for r in batch))
        return {TP: batch}

    async def position(self, tp: TopicPartition) -> int:
        return self.fetch_position

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


class FakeReader:
    """Loads an empty ledger for each partition it is asked to rebuild, noting the anchors."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.anchors: list[dict[int, int]] = []

    async def rebuild(self, anchors: dict[int, int]) -> None:
        self.anchors.append(anchors)
        for partition in anchors:
            self.ledger.load(partition, self.ledger.generation(partition), [])


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        self.records.append((record.offset, reason))


async def test_jobs_are_held_once_invalid_ones_dead_lettered_and_fetching_pauses_at_the_cap() -> None:
    config = replace(Settings().delivery, jobs_topic=TOPIC, max_pending=2)
    stop = asyncio.Event()
    batches = [[record(0, job("a")), record(1, job("a")), record(2, b"{not json")], [record(3, job("b"))]]
    kafka, dead, jobs, due = FakeConsumer(batches, stop), DeadLetters(), PendingJobs(), DueJobs(Clock())
    ledger = Ledger()
    reader = FakeReader(ledger)
    consumer = JobConsumer(config, kafka, jobs, due, dead, ledger, reader)  # type: ignore[arg-type]
    consumer.assign({0})

    await consumer.fetch_until(stop)

    # Read back once, before the first job, from the time that job was published.
    assert reader.anchors == [{0: 1_000}]

    assert [offset for offset, _ in dead.records] == [2]
    assert "not valid JSON" in dead.records[0][1]
    assert (jobs.unfinished, jobs.holds("a"), jobs.holds("b")) == (2, True, True)
    assert kafka.paused_tps == {TP}
    # Committed below job a, the earliest unfinished, although 1 and 2 are done.
    assert kafka.commits == [{TP: 0}]

    await consumer.release({0})

    assert [p.job.job_id for p in due.remove_from({0})] == []
    assert (jobs.partitions, jobs.position(0), jobs.holds("a")) == (set(), None, False)
    assert not ledger.loaded(0)
    assert kafka.commits == [{TP: 0}]


class RevokedWhileReading(FakeReader):
    """The first rebuild sees its partition let go (and given back) before it finishes."""

    async def rebuild(self, anchors: dict[int, int]) -> None:
        if not self.anchors:
            self.anchors.append(anchors)
            generation = self.ledger.generation(0)
            self.ledger.forget({0})
            self.ledger.load(0, generation, [])
            return
        await super().rebuild(anchors)


async def test_records_fetched_while_their_partitions_ledger_was_lost_are_not_taken() -> None:
    config = replace(Settings().delivery, jobs_topic=TOPIC)
    stop = asyncio.Event()
    # The group hands the partition back from its committed offset: the same records again.
    batches = [[record(0, job("a")), record(1, b"{not json")], [record(0, job("a")), record(1, b"{not json")]]
    kafka, dead, jobs, due = FakeConsumer(batches, stop), DeadLetters(), PendingJobs(), DueJobs(Clock())
    ledger = Ledger()
    reader = RevokedWhileReading(ledger)
    consumer = JobConsumer(config, kafka, jobs, due, dead, ledger, reader)  # type: ignore[arg-type]
    consumer.assign({0})

    await consumer.fetch_until(stop)

    assert reader.anchors == [{0: 1_000}, {0: 1_000}]
    # Taken once, from the second fetch: the first was read before the partition came back.
    assert (jobs.unfinished, [offset for offset, _ in dead.records]) == (1, [1])


def withdrawal(offset: int, user: str, list_name: str) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps({"withdrawal_id": f"0:{offset}:withdrawal:{list_name}", "user_id": user, "list": list_name})
    headers = [(KIND_HEADER, WITHDRAWAL.encode())]
    return ConsumerRecord(TOPIC, 0, offset, 1_000 + offset, 0, user.encode(), value, None, 3, len(value), headers)


def held_job(job_id: str, user: str, list_name: str) -> bytes:
    # Due in an hour: held until then, as quiet hours or the best hour hold an email.
    send_at = format_time(int(time.time() * 1000) + 3_600_000)
    return orjson.dumps({**job_doc(job_id=job_id, user_id=user), "list": list_name, "send_at": send_at})


async def test_a_withdrawal_drops_the_held_jobs_of_its_user_and_list_and_no_others() -> None:
    config = replace(Settings().delivery, jobs_topic=TOPIC)
    stop = asyncio.Event()
    batches = [
        [
            record(0, held_job("ann-news", "ann", "marketing")),
            record(1, held_job("ann-tips", "ann", "tips")),
            record(2, held_job("bob-news", "bob", "marketing")),
            withdrawal(3, "ann", "marketing"),
            record(4, held_job("ann-again", "ann", "marketing")),  # after the withdrawal: subscribed again
            withdrawal(5, "bob", "all"),
        ],
        [ConsumerRecord(TOPIC, 0, 6, 1_006, 0, b"x", b"{}", None, 3, 2, [(KIND_HEADER, WITHDRAWAL.encode())])],
    ]
    kafka, dead, jobs, due = FakeConsumer(batches, stop), DeadLetters(), PendingJobs(), DueJobs(Clock())
    ledger = Ledger()
    consumer = JobConsumer(config, kafka, jobs, due, dead, ledger, FakeReader(ledger))  # type: ignore[arg-type]
    consumer.assign({0})

    await consumer.fetch_until(stop)

    assert sorted(p.job.job_id for p in due.remove_from({0})) == ["ann-again", "ann-tips"]
    assert (jobs.holds("ann-news"), jobs.holds("bob-news"), jobs.holds("ann-tips")) == (False, False, True)
    assert [offset for offset, _ in dead.records] == [6]
    assert "withdrawal record must be a JSON object with user_id and list" in dead.records[0][1]


async def test_a_partition_with_nothing_unfinished_is_committed_past_the_transaction_markers_after_it() -> None:
    config = replace(Settings().delivery, jobs_topic=TOPIC)
    stop = asyncio.Event()
    kafka, dead, jobs, due = (
        FakeConsumer([[record(0, b"{not json")]], stop),
        DeadLetters(),
        PendingJobs(),
        DueJobs(Clock()),
    )
    ledger = Ledger()
    consumer = JobConsumer(config, kafka, jobs, due, dead, ledger, FakeReader(ledger))  # type: ignore[arg-type]
    consumer.assign({0})
    await consumer.fetch_until(stop)
    kafka.fetch_position = 2  # the record, then the commit marker of its transaction
    await consumer.commit({0})
    assert kafka.commits[-1] == {TP: 2}
