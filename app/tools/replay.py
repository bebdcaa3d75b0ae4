"""Putting records back into the events topic: dead letters after a fix, or a time range of
any topic (a backfill, or a re-run into a fresh deployment).

Replayed records keep their key, value and headers, less the dead-letter topic's own
`tidemail.*` headers, plus `tidemail.replayed-from: <topic>:<partition>:<offset>`. The worker
treats them like any other event: a copy of an event it already applied is skipped by
`event_id`, and an event older than `TIDEMAIL_MAX_TRIGGER_AGE` updates state but starts no send.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from streams.kafka.outputs import ID_HEADER

REPLAYED_FROM_HEADER = "tidemail.replayed-from"
# What the worker adds to a dead letter; the rest are the original record's own headers.
DEAD_LETTER_HEADERS = frozenset(
    {
        ID_HEADER,
        "tidemail.kind",
        "tidemail.reason",
        "tidemail.source.topic",
        "tidemail.source.partition",
        "tidemail.source.offset",
    }
)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Progress: TypeAlias = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Window:
    """Record timestamps from `since_ms` (inclusive) to `until_ms` (exclusive); None is open."""

    since_ms: int | None = None
    until_ms: int | None = None

    def holds(self, timestamp_ms: int) -> bool:
        return (self.since_ms is None or timestamp_ms >= self.since_ms) and (
            self.until_ms is None or timestamp_ms < self.until_ms
        )


def parse_instant(text: str) -> int:
    """An RFC 3339 instant (`2026-11-28T08:00:00Z`; a bare date is midnight UTC) in epoch milliseconds."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"expected an RFC 3339 instant such as 2026-11-28T08:00:00Z; got {text!r}") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def header(record: Record, name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            text: str = bytes(value).decode(errors="replace")
            return text
    return None


def replayed_headers(record: Record) -> list[tuple[str, bytes]]:
    kept = [(key, value) for key, value in record.headers if key not in DEAD_LETTER_HEADERS]
    return [*kept, (REPLAYED_FROM_HEADER, f"{record.topic}:{record.partition}:{record.offset}".encode())]


async def read_window(
    bootstrap: str, topic: str, window: Window, progress: Progress | None = None
) -> AsyncIterator[Record]:
    """Every record of `topic` in `window`, partition by partition, up to the end offsets found on start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await _start_offsets(consumer, tps, window, ends)
        total, done = sum(ends[tp] - starts[tp] for tp in tps), 0
        for tp in tps:
            consumer.seek(tp, starts[tp])
            while await consumer.position(tp) < ends[tp]:
                records = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    done += 1
                    if window.holds(record.timestamp):
                        yield record
                if progress is not None:
                    progress(done, total)
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in described[0]["partitions"])
    if not partitions:
        raise ValueError(f"topic {topic!r} does not exist or has no partitions")
    return partitions


async def _start_offsets(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], window: Window, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    if window.since_ms is None:
        beginnings: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
        return beginnings
    found = await consumer.offsets_for_times({tp: window.since_ms for tp in tps})
    return {tp: found[tp].offset if found[tp] is not None else ends[tp] for tp in tps}


async def list_dead_letters(
    bootstrap: str, topic: str, kind: str | None, window: Window, progress: Progress | None = None
) -> tuple[list[Record], Counter[str]]:
    """The dead letters of `kind` (any if None) in `window`, and how many of each kind there are in it."""
    matching: list[Record] = []
    kinds: Counter[str] = Counter()
    async for record in read_window(bootstrap, topic, window, progress):
        record_kind = header(record, "tidemail.kind") or "unknown"
        kinds[record_kind] += 1
        if kind is None or record_kind == kind:
            matching.append(record)
    return matching, kinds


async def republish(bootstrap: str, to_topic: str, records: AsyncIterable[Record] | Iterable[Record]) -> int:
    """Produce `records` to `to_topic` keyed as they were (the default partitioner places them
    like every producer of the events topic should), acknowledged by all in-sync replicas;
    return how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        async for record in _each(records):
            await producer.send(to_topic, record.value, key=record.key, headers=replayed_headers(record))
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _each(records: AsyncIterable[Record] | Iterable[Record]) -> AsyncIterator[Record]:
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record
