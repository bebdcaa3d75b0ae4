"""Producing many records as one Kafka batch per topic-partition.

`AIOKafkaProducer.send` costs ~10 us per record in Python; appending to a batch
builder and sending whole batches costs a fraction of that, and the hot path knows
the partition of every record it writes. Records are plain tuples grouped by
topic-partition up front: a busy batch produces tens of thousands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

Headers = list[tuple[str, bytes]]
# key, value, headers
Record = tuple[bytes | None, bytes | None, Headers]
NO_HEADERS: Headers = []


async def send_grouped(
    producer: AIOKafkaProducer, grouped: Mapping[tuple[str, int], Sequence[Record]]
) -> dict[tuple[str, int], int]:
    """Send each topic-partition's records in order, await the broker's acknowledgement,
    and return each topic-partition's offset after its last record."""
    # Each batch is closed before it is handed over: a closed batch is sent at once, while
    # an open one waits out the producer's linger_ms for records that will never come
    # (at 1,000 events/s, event to job p50 26-28 ms open, 8-12 ms closed).
    # One timestamp for the whole batch instead of a clock read per record.
    timestamp_ms = int(time.time() * 1000)
    sent: list[tuple[str, int, int, asyncio.Future[Any]]] = []
    for (topic, partition), records in grouped.items():
        if not records:
            continue
        batch = producer.create_batch()
        count = 0
        for key, value, headers in records:
            if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers) is None:
                batch.close()
                sent.append((topic, partition, count, await producer.send_batch(batch, topic, partition=partition)))
                batch = producer.create_batch()
                count = 0
                if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers) is None:
                    raise MessageSizeTooLargeError(f"a record for {topic}[{partition}] does not fit in one batch")
            count += 1
        batch.close()
        sent.append((topic, partition, count, await producer.send_batch(batch, topic, partition=partition)))
    # Every future awaited, even after one failed: an unretrieved failure is logged as a bug.
    results = await asyncio.gather(*(future for *_, future in sent), return_exceptions=True)
    ends: dict[tuple[str, int], int] = {}
    for (topic, partition, count, _), metadata in zip(sent, results, strict=True):
        if isinstance(metadata, BaseException):
            raise metadata
        ends[(topic, partition)] = max(ends.get((topic, partition), 0), metadata.offset + count)
    return ends
