"""Sending the soak's stream fast: messages go into one batch per partition (murmur2 of the
key, as the worker places users), and a full batch is sent whole while the next fills, a
bounded number in flight. Per-message `send` costs a future and a partitioner call each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from app.tools.common import keep_pace
from streams.core.partitioning import partition_of

MAX_IN_FLIGHT = 16
BATCH_BYTES = 1024 * 1024


async def produce_partitioned(
    bootstrap: str,
    topic: str,
    partitions: int,
    messages: Iterable[tuple[bytes, bytes]],
    progress: Callable[[int], None],
    rate: float | None = None,
) -> int:
    """Send every message to its key's partition, at most `rate` a second if given; call
    `progress` with each batch's count; return the total."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=BATCH_BYTES, max_request_size=2 * BATCH_BYTES, acks=1
    )
    await producer.start()
    batches: dict[int, BatchBuilder] = {}
    in_flight: list[asyncio.Future[object]] = []
    sent = 0
    started = time.monotonic()

    async def flush(partition: int) -> None:
        batch = batches.pop(partition)
        counted = batch.record_count()
        in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        if len(in_flight) > MAX_IN_FLIGHT:
            await in_flight.pop(0)
        progress(counted)

    try:
        for key, value in messages:
            partition = partition_of(key, partitions)
            batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
            if batch.append(key=key, value=value, timestamp=None) is None:
                await flush(partition)
                batch = batches.setdefault(partition, producer.create_batch())
                batch.append(key=key, value=value, timestamp=None)
            sent += 1
            if rate is not None and sent % 100 == 0:
                await keep_pace(sent, rate, started)
        for partition in list(batches):
            await flush(partition)
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return sent
