"""The Kafka clients a worker and a trainer hold for their whole run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.fencing import PartitionWriters

MIB = 1024 * 1024
# Kafka's default message.max.bytes, less room for the batch header.
MAX_RECORD_BYTES = 1_000_000


def group_consumer(bootstrap: str, group_id: str, **options: Any) -> AIOKafkaConsumer:
    """A group member that commits its offsets itself, once what it read is durable elsewhere."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * MIB,
        **options,
    )


class WorkerClients:
    """The consumer of the worker's event partitions, the transactional producers of what
    each partition's batches write, and a producer of what may be written more than once
    (training records, events forwarded to their partition).

    Created when the worker starts, not before: aiokafka clients bind to the running loop.
    """

    def __init__(self, bootstrap: str, group_id: str) -> None:
        self.bootstrap = bootstrap
        self._group_id = group_id
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        # Outputs and changelog records, in a transaction per event partition (fencing.py).
        self.writers = PartitionWriters(
            bootstrap,
            transactional_prefix=group_id,
            linger_ms=5,
            max_batch_size=MIB,
            max_request_size=MAX_RECORD_BYTES * 4,
            # Longer than a broker restart: the coordinator aborts a transaction open longer.
            transaction_timeout_ms=300_000,
        )
        self.started = asyncio.Event()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the worker's Kafka consumer is used before the worker started")
        return self._consumer

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the worker's Kafka producer is used before the worker started")
        return self._producer

    async def start(self) -> None:
        # The worker's log setup leaves aiokafka at DEBUG, and the producer builds a
        # debug record for every message sent: 6% of the hot path's time.
        logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
        self._consumer = group_consumer(self.bootstrap, self._group_id, fetch_max_bytes=64 * MIB)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=MIB,
            max_request_size=MAX_RECORD_BYTES * 4,
        )
        await self._producer.start()
        await self._consumer.start()
        self.started.set()

    async def stop(self) -> None:
        # A worker whose start failed earlier (its web port taken, say) stops too, and
        # there are no clients to close.
        if not self.started.is_set():
            return
        await self.consumer.stop()
        await self.writers.close()
        await self.producer.stop()


class EventPublisher:
    """Publishes events the worker itself observed (an unsubscribe click) to the events topic,
    keyed like every producer keys them, so each is applied in its user's order."""

    def __init__(self, clients: WorkerClients, events_topic: str) -> None:
        self._clients = clients
        self._events_topic = events_topic

    async def submit(self, user_id: str, value: bytes) -> None:
        await self._clients.started.wait()
        await self._clients.producer.send_and_wait(self._events_topic, value, key=user_id.encode())
