"""The ingestion server's Kafka producer for the events topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from streams.core.partitioning import Partitioner
from streams.core.tracking import Accepted

MIB = 1024 * 1024
# A produce request the broker has not answered in this long fails the HTTP request with a
# 503, before a Segment client gives up on it (its default timeout is 15 s) and retries.
PRODUCE_TIMEOUT_MS = 10_000


class EventProducer:
    """Acknowledged by every in-sync replica, idempotent so that a retried produce request is
    not written twice, each event keyed by its user id on that key's murmur2 partition
    (Kafka's and aiokafka's default partitioner, where the worker keeps the user's state)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = Partitioner(1)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            # A whole request (500 KB at most) fits one record batch.
            max_batch_size=MIB,
            request_timeout_ms=PRODUCE_TIMEOUT_MS,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def produce(self, events: Sequence[Accepted]) -> None:
        """Send every event, then wait until the broker acknowledged each one."""
        producer = self._producer
        assert producer is not None, "produce() before start()"
        partitions = len(await producer.partitions_for(self._topic))
        if partitions != self._partitioner.partitions:
            self._partitioner = Partitioner(partitions)
        # `send` costs ~25 us of CPU per record, more than mapping and validating the event,
        # so a batch request goes as one record batch per partition. But a record batch waits
        # for its partition's previous one to drain (one in flight per partition, as
        # idempotence needs), which would queue many small requests behind each other; their
        # few events join the batches `send` is already filling.
        if len(events) < 2 * partitions:
            acks = [await self._send_one(producer, event) for event in events]
        else:
            acks = await self._send_batches(producer, events)
        await asyncio.gather(*acks)

    async def _send_one(self, producer: AIOKafkaProducer, event: Accepted) -> Any:
        partition = self._partitioner(event.user_id)
        return await producer.send(self._topic, event.value, key=event.user_id.encode(), partition=partition)

    async def _send_batches(self, producer: AIOKafkaProducer, events: Sequence[Accepted]) -> list[Any]:
        grouped: dict[int, list[Accepted]] = {}
        for event in events:
            grouped.setdefault(self._partitioner(event.user_id), []).append(event)
        now_ms = int(time.time() * 1000)
        acks = []
        for partition, group in grouped.items():
            batch = producer.create_batch()
            for event in group:
                key = event.user_id.encode()
                if batch.append(key=key, value=event.value, timestamp=now_ms) is None:
                    acks.append(await producer.send_batch(batch, self._topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=event.value, timestamp=now_ms) is None:
                        raise MessageSizeTooLargeError(f"an event of {len(event.value)} bytes fits no record batch")
            acks.append(await producer.send_batch(batch, self._topic, partition=partition))
        return acks
