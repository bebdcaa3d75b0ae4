"""Training item knowledge once for the fleet, and handing every worker the result.

* **Training** runs in `tidemail trainer` processes, not in workers: it learns from
  every interaction of the fleet, and sharing a core with a worker's hot path cost that
  worker two thirds of its throughput. The interactions topic has one partition and every
  trainer process joins one consumer group, so Kafka gives the partition to exactly one
  of them and to another when that one dies (run two for failover). The one holding it
  restores the latest snapshot, seeks to the interactions offset the snapshot reflects,
  trains on everything after it, and publishes a new snapshot every few seconds.
* **Following** runs in every worker: a consumer of the compacted snapshot topic hands
  each new `ItemModel` to the batch processor, which ranks and renders with it.

A snapshot is published before the trainer's consumer offset is committed, so after a
crash the next trainer replays at most the interactions since the last snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from mode import Service

from models.item_trainer import ItemTrainer
from models.reco import ItemModel
from models.training import TrainingBatch
from streams import metrics
from streams.core.processing import BatchProcessor
from streams.kafka.clients import group_consumer

log = logging.getLogger(__name__)

SNAPSHOT_KEY = b"item-model"
# Snapshots carry every known item; Kafka's default 1 MB would cap the catalogue.
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


class SnapshotFeed(Service):
    """Keeps the batch processor ranking with the newest published snapshot."""

    def __init__(self, *, bootstrap: str, item_model_topic: str, processor: BatchProcessor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bootstrap = bootstrap
        self._snapshots = TopicPartition(item_model_topic, 0)
        self._processor = processor
        self.received_at: float | None = None
        self._consumer: AIOKafkaConsumer | None = None

    def status(self) -> dict[str, Any]:
        model = self._processor.item_model
        age = round(time.monotonic() - self.received_at, 1) if self.received_at else None
        return {
            "snapshot_offset": model.offset,
            "snapshot_version": model.version,
            "snapshot_age_s": age,
            "items": model.items,
            "products": len(model.products),
        }

    async def on_start(self) -> None:
        consumer = snapshot_consumer(self._bootstrap)
        await consumer.start()
        consumer.assign([self._snapshots])
        await seek_to_latest(consumer, self._snapshots)
        self._consumer = consumer

    async def on_stop(self) -> None:
        # A worker whose start failed earlier (its web port taken, say) stops this service
        # too; a missing consumer must not hide the error that stopped it.
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _follow(self) -> None:
        # mode starts a service's tasks only after its on_start succeeded.
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            fetched = await consumer.getmany(timeout_ms=500)
            records = [r for batch in fetched.values() for r in batch if r.value is not None]
            model = snapshot_from_record(records[-1]) if records else None
            if model is not None:
                self._processor.item_model = model
                self.received_at = time.monotonic()
                metrics.ITEM_MODEL_ITEMS.set(model.items)


class Trainer:
    """One `tidemail trainer` process: trains while Kafka gives it the interactions partition."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        interactions_topic: str,
        item_model_topic: str,
        catalog_topic: str,
        half_life_days: float,
        catalog_capacity: int,
        snapshot_interval_s: float,
    ) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._interactions = TopicPartition(interactions_topic, 0)
        self._snapshots = TopicPartition(item_model_topic, 0)
        self._catalog = TopicPartition(catalog_topic, 0)
        self._trainer_settings = (half_life_days, catalog_capacity)
        self._snapshot_interval_s = snapshot_interval_s
        self._trainer: ItemTrainer | None = None
        self._published_offset = -1
        self._catalog_changed = False
        self._last_snapshot_at = 0.0
        self._training = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", max_request_size=MAX_SNAPSHOT_BYTES
        )
        self._consumer = group_consumer(self._bootstrap, self._group_id)
        # The whole compacted catalogue, from the start, whenever this process trains.
        self._catalog_reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await self._producer.start()
        await self._consumer.start()
        await self._catalog_reader.start()
        try:
            self._catalog_reader.assign([self._catalog])
            self._consumer.subscribe([self._interactions.topic], listener=_TrainerElection(self))
            while not stop.is_set():
                await self._train_once()
            await self.stop_training()
        finally:
            await self._catalog_reader.stop()
            await self._consumer.stop()
            await self._producer.stop()

    async def _train_once(self) -> None:
        fetched = await self._consumer.getmany(timeout_ms=200, max_records=20_000)
        async with self._training:
            trainer = self._trainer
            if trainer is None:
                return
            catalog = await self._catalog_reader.getmany(self._catalog, timeout_ms=0)
            for entry in catalog.get(self._catalog, []):
                trainer.update_catalog((entry.key or b"").decode(), orjson.loads(entry.value) if entry.value else None)
                self._catalog_changed = True
            records = fetched.get(self._interactions, [])
            for record in records:
                trainer.learn_record(TrainingBatch.from_bytes(record.value or b""), record.offset)
            metrics.TRAINER_BATCHES.inc(len(records))
            if time.monotonic() - self._last_snapshot_at >= self._snapshot_interval_s:
                await self._publish(trainer)

    async def _publish(self, trainer: ItemTrainer) -> None:
        if trainer.offset == self._published_offset and not self._catalog_changed:
            return
        snapshot = trainer.export()
        await self._producer.send_and_wait(self._snapshots.topic, snapshot.to_bytes(), key=SNAPSHOT_KEY, partition=0)
        await self._consumer.commit({self._interactions: trainer.offset})
        self._published_offset = trainer.offset
        self._catalog_changed = False
        self._last_snapshot_at = time.monotonic()
        metrics.SNAPSHOTS_PUBLISHED.inc()
        log.info("published item model at interactions offset %d (%d items)", trainer.offset, snapshot.items)

    async def become_trainer(self) -> None:
        async with self._training:
            trainer = ItemTrainer(*self._trainer_settings)
            latest = await self._latest_snapshot()
            if latest is not None:
                trainer.restore(latest)
            self._consumer.seek(self._interactions, trainer.offset)
            await self._catalog_reader.seek_to_beginning(self._catalog)
            self._trainer = trainer
            self._published_offset = trainer.offset
            log.info("training the item model from interactions offset %d", trainer.offset)

    async def stop_training(self) -> None:
        async with self._training:
            if self._trainer is not None:
                await self._publish(self._trainer)  # hand the freshest state to the next trainer
            self._trainer = None

    async def _latest_snapshot(self) -> ItemModel | None:
        reader = snapshot_consumer(self._bootstrap)
        await reader.start()
        try:
            reader.assign([self._snapshots])
            if not await seek_to_latest(reader, self._snapshots):
                return None
            for _ in range(15):
                fetched = await reader.getmany(self._snapshots, timeout_ms=2_000)
                records = fetched.get(self._snapshots, [])
                if records:
                    # An unreadable snapshot (say, from an incompatible release) means training afresh.
                    return snapshot_from_record(records[-1])
            raise RuntimeError(f"the latest item-model snapshot in {self._snapshots.topic} did not arrive in 30 s")
        finally:
            await reader.stop()


def snapshot_from_record(record: ConsumerRecord[bytes, bytes]) -> ItemModel | None:
    """The snapshot in `record`, or None (logged) when it cannot be read: a bad snapshot
    must not take a worker down, which keeps ranking with the model it has."""
    try:
        model = ItemModel.from_bytes(record.value or b"")
    except (ValueError, KeyError, TypeError, zlib.error) as e:
        log.error("cannot read the item-model snapshot at offset %d: %r", record.offset, e)
        return None
    model.version = record.offset
    return model


def snapshot_consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=2 * MAX_SNAPSHOT_BYTES
    )


async def seek_to_latest(consumer: AIOKafkaConsumer, snapshots: TopicPartition) -> bool:
    """Position on the last snapshot; False when none was ever published."""
    end: int = (await consumer.end_offsets([snapshots]))[snapshots]
    consumer.seek(snapshots, max(0, end - 1))
    return end > 0


class _TrainerElection(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whoever is assigned the interactions partition trains; losing it stops training."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            await self._trainer.stop_training()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            await self._trainer.become_trainer()
