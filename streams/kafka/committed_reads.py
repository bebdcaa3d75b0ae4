"""Faust reading the `users` changelog as committed records only.

The hot path writes the changelog in transactions (`fencing.py`), so Faust's recovery must
skip what an aborted transaction (a fenced worker's) wrote: its
consumer reads committed records only, up to the last stable offset. Faust reads that way
when it runs transactions itself, but then also expects the last offset of a partition to
be a record it receives, and a partition written in transactions ends with a commit
marker, which no consumer receives: recovery would wait for it forever. So recovery's
target for each partition is the offset of its last committed record, found by reading
the partition's tail once when recovery starts. Before that read, a partition about to be
recovered as active has its writers fenced (`CommittedReadsTableManager.fence_writers`):
no earlier owner, dead or only paused, can commit past the end recovery aims at.

Every partition behind its changelog is restored by `changelog_restore`, with a consumer
of its own: Faust's per-record loop is slow and can leave holes (see there).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import aiokafka
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport, server_list
from faust.types import TP, ConsumerT

from streams.kafka.changelog_restore import READ_COMMITTED, RestoreRange, behind, restore_partitions

# How far back from a partition's end the first look for its last record goes; each next look goes 8x further.
TAIL_WINDOW = 16


class CommittedReadsConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        # Faust chooses read_committed only when it runs transactions itself.
        in_transaction = self.consumer.in_transaction
        self.consumer.in_transaction = True
        try:
            return super()._create_worker_consumer(transport)
        finally:
            self.consumer.in_transaction = in_transaction


class CommittedReadsConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return CommittedReadsConsumerThread(self, loop=self.loop, beacon=self.beacon)


class CommittedReadsTransport(Transport):
    """Faust's aiokafka transport whose consumer reads committed records only."""

    Consumer = CommittedReadsConsumer


class CommittedRecovery(Recovery):
    """Faust's recovery, aiming at each changelog partition's last committed record."""

    async def _build_highwaters(self, consumer: ConsumerT, tps: set[TP], destination: Counter[TP], title: str) -> None:
        if title == "active":
            destination.clear()
            await self._fence(tps)
        await super()._build_highwaters(consumer, tps, destination, title)
        ends = {TopicPartition(tp.topic, tp.partition): offset + 1 for tp, offset in destination.items() if offset >= 0}
        if ends:
            last = await last_record_offsets(self._bootstrap(), ends)
            for tp, offset in last.items():
                destination[TP(tp.topic, tp.partition)] = offset  # Counter.update would add

    async def _build_offsets(self, consumer: ConsumerT, tps: set[TP], destination: Counter[TP], title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if destination is not self.active_offsets:
            return
        ranges = {
            tp: RestoreRange(self.tp_to_table[tp], destination[tp], self.active_highwaters[tp])
            for tp in tps
            if behind(destination[tp], self.active_highwaters[tp])
        }
        if not ranges:
            return
        records = sum(restore.remaining for restore in ranges.values())
        self.log.info("Restoring %d records of %d partitions", records, len(ranges))

        def applied(tp: TP, offset: int) -> None:
            destination[tp] = offset

        # Faust stops recovery when a step outlasts broker_request_timeout; the rest is left to it.
        deadline = time.monotonic() + 0.8 * self.app.conf.broker_request_timeout
        await restore_partitions(self._bootstrap(), ranges, applied, deadline)

    async def _fence(self, tps: set[TP]) -> None:
        fence = cast(CommittedReadsTableManager, self.tables).fence_writers
        if fence is None:
            raise RuntimeError("recovery of active partitions started before their writers can be fenced")
        await fence(tps)

    def _bootstrap(self) -> list[str]:
        return server_list(self.app.conf.broker_consumer, Transport.default_port)


class CommittedReadsTableManager(TableManager):
    """Faust's table manager with `CommittedRecovery`.

    `fence_writers` is given the changelog partitions this worker is about to recover as
    active, before their end is read: it registers their transactional producers, which
    aborts a dead or expelled owner's open transaction and refuses its later ones, so the
    end recovery reads to is final (Kafka Streams initialises a task's producer before
    restoring its state for the same reason).
    """

    fence_writers: Callable[[set[TP]], Awaitable[None]] | None = None

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = CommittedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


async def last_record_offsets(bootstrap: list[str], ends: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The offset of the last committed record before each end offset (a last stable offset),
    or -1 when there is none: commit and abort markers and aborted records are not records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=READ_COMMITTED)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(list(ends))
        return {tp: await _last_record(consumer, tp, starts[tp], end) for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def _last_record(consumer: AIOKafkaConsumer, tp: TopicPartition, first: int, end: int) -> int:
    consumer.assign([tp])
    window = TAIL_WINDOW
    while True:
        start = max(first, end - window)
        consumer.seek(tp, start)
        last = -1
        while await consumer.position(tp) < end:
            records: Any = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
            last = max([last, *(record.offset for record in records if record.offset < end)])
        if last >= 0 or start == first:
            return last
        window *= 8
