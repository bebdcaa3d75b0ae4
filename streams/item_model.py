"""Training item knowledge once for the fleet, and handing every worker the result.

Every worker runs this service. Two things happen in it:

* **Training**, on one worker only. The interactions topic has one partition, and each
  worker joins the trainer consumer group; Kafka gives the partition to exactly one
  member, and to another when that one dies. The member holding it restores the latest
  snapshot, seeks to the interactions offset the snapshot reflects, trains on every
  interaction after it, and publishes a new snapshot every few seconds.
* **Following**, on every worker: a consumer of the compacted snapshot topic hands each
  new `ItemModel` to the batch processor, which ranks and renders with it.

A snapshot is published before the trainer's consumer offset is committed, so after a
crash the next trainer replays at most the interactions since the last snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from models.reco import ItemModel, ItemTrainer, decode_interaction
from streams import metrics
from streams.pipeline import BatchProcessor

log = logging.getLogger(__name__)

SNAPSHOT_KEY = b"item-model"
# Snapshots carry every known item; Kafka's default 1 MB would cap the catalogue.
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


class ItemModelService(Service):
    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        interactions_topic: str,
        item_model_topic: str,
        processor: BatchProcessor,
        n_factors: int,
        half_life_days: float,
        catalog_capacity: int,
        snapshot_interval_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._interactions = TopicPartition(interactions_topic, 0)
        self._snapshots = TopicPartition(item_model_topic, 0)
        self._processor = processor
        self._trainer_settings = (n_factors, half_life_days, catalog_capacity)
        self._snapshot_interval_s = snapshot_interval_s
        self._trainer: ItemTrainer | None = None
        self._published_offset = -1
        self._last_snapshot_at = 0.0
        self._training = asyncio.Lock()
        self.snapshot_received_at: float | None = None

    @property
    def is_trainer(self) -> bool:
        return self._trainer is not None

    def status(self) -> dict[str, Any]:
        model = self._processor.item_model
        return {
            "trainer_here": self.is_trainer,
            "snapshot_offset": model.offset,
            "snapshot_age_s": round(time.monotonic() - self.snapshot_received_at, 1)
            if self.snapshot_received_at
            else None,
            "items": len(model.skus),
            "products": len(model.products),
            "factors": model.n_factors,
        }

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", max_request_size=MAX_SNAPSHOT_BYTES
        )
        self._feed = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, fetch_max_bytes=2 * MAX_SNAPSHOT_BYTES
        )
        self._train_consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._producer.start()
        await self._feed.start()
        await self._train_consumer.start()
        self._feed.assign([self._snapshots])
        await self._seek_to_latest_snapshot(self._feed)
        self._train_consumer.subscribe([self._interactions.topic], listener=_TrainerElection(self))

    async def on_stop(self) -> None:
        async with self._training:
            await self._train_consumer.stop()
            await self._feed.stop()
            await self._producer.stop()

    @Service.task
    async def _follow_snapshots(self) -> None:
        while not self.should_stop:
            fetched = await self._feed.getmany(timeout_ms=500)
            values = [r.value for batch in fetched.values() for r in batch if r.value is not None]
            if values:
                model = ItemModel.decode(values[-1])
                self._processor.item_model = model
                self.snapshot_received_at = time.monotonic()
                metrics.ITEM_MODEL_ITEMS.set(len(model.skus))

    @Service.task
    async def _train(self) -> None:
        while not self.should_stop:
            if self._trainer is None:
                await self.sleep(0.2)
                continue
            fetched = await self._train_consumer.getmany(timeout_ms=200, max_records=20_000)
            async with self._training:
                trainer = self._trainer
                if trainer is None or self.should_stop:
                    continue
                for record in fetched.get(self._interactions, []):
                    interaction, product = decode_interaction(record.value or b"")
                    trainer.learn(interaction, product, record.offset)
                metrics.TRAINER_INTERACTIONS.inc(len(fetched.get(self._interactions, [])))
                if time.monotonic() - self._last_snapshot_at >= self._snapshot_interval_s:
                    await self._publish(trainer)

    async def _publish(self, trainer: ItemTrainer) -> None:
        if trainer.offset == self._published_offset:
            return
        snapshot = trainer.snapshot()
        await self._producer.send_and_wait(self._snapshots.topic, snapshot.encode(), key=SNAPSHOT_KEY, partition=0)
        await self._train_consumer.commit({self._interactions: trainer.offset})
        self._published_offset = trainer.offset
        self._last_snapshot_at = time.monotonic()
        metrics.SNAPSHOTS_PUBLISHED.inc()

    async def become_trainer(self) -> None:
        async with self._training:
            trainer = ItemTrainer(*self._trainer_settings)
            latest = await self._latest_snapshot()
            if latest is not None:
                trainer.restore(latest)
            self._train_consumer.seek(self._interactions, trainer.offset)
            self._trainer = trainer
            self._published_offset = trainer.offset
            log.info("training item model from interactions offset %d", trainer.offset)

    async def stop_training(self) -> None:
        async with self._training:
            if self._trainer is not None:
                await self._publish(self._trainer)  # hand the freshest state to the next trainer
            self._trainer = None

    async def _latest_snapshot(self) -> ItemModel | None:
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, fetch_max_bytes=2 * MAX_SNAPSHOT_BYTES
        )
        await reader.start()
        try:
            reader.assign([self._snapshots])
            if not await self._seek_to_latest_snapshot(reader):
                return None
            for _ in range(15):
                fetched = await reader.getmany(self._snapshots, timeout_ms=2_000)
                records = fetched.get(self._snapshots, [])
                if records and records[-1].value is not None:
                    return ItemModel.decode(records[-1].value)
            raise RuntimeError(f"the latest item-model snapshot in {self._snapshots.topic} did not arrive in 30 s")
        finally:
            await reader.stop()

    async def _seek_to_latest_snapshot(self, consumer: AIOKafkaConsumer) -> bool:
        end: int = (await consumer.end_offsets([self._snapshots]))[self._snapshots]
        consumer.seek(self._snapshots, max(0, end - 1))
        return end > 0


class _TrainerElection(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whoever is assigned the interactions partition trains; losing it stops training."""

    def __init__(self, service: ItemModelService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            await self._service.stop_training()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            await self._service.become_trainer()
