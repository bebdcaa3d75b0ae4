"""The jobs topic's consumer (group `<app id>-deliver`): rebuilds the ledger of a partition
it is given before taking its jobs, reads jobs into the schedule, pauses above the pending
cap, commits each partition up to its earliest unfinished job (and forgets what the ledger
no longer needs), and hands partitions over on a rebalance."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from streams import metrics
from streams.core.errors import InvalidJob
from streams.core.withdrawal import is_withdrawal
from streams.delivery.availability import until_available
from streams.delivery.config import DeliveryConfig
from streams.delivery.due import DueJobs
from streams.delivery.ledger import CLOCK_SKEW_MS, Ledger
from streams.delivery.messages import DUPLICATE, parse_job
from streams.delivery.pending import Pending, PendingJobs
from streams.delivery.publisher import OutcomePublisher
from streams.delivery.rebuild import LedgerReader
from streams.delivery.withdrawals import read_withdrawal, withdraw

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
# How long a revocation or a stop waits for the sends under way.
DRAIN_TIMEOUT_S = 30.0


def jobs_consumer(config: DeliveryConfig) -> AIOKafkaConsumer:
    """The Kafka client, not yet started; offsets are committed by `JobConsumer` alone."""
    return AIOKafkaConsumer(
        bootstrap_servers=config.kafka_bootstrap,
        group_id=f"{config.app_id}-deliver",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Jobs are written in workers' transactions: an aborted one (a fenced worker's) is never read.
        isolation_level="read_committed",
        session_timeout_ms=int(config.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(config.kafka_session_timeout_s * 200),
    )


class JobConsumer:
    """Reads jobs and keeps the group's committed offsets below every unfinished one."""

    def __init__(
        self,
        config: DeliveryConfig,
        consumer: AIOKafkaConsumer,
        jobs: PendingJobs,
        due: DueJobs,
        publisher: OutcomePublisher,
        ledger: Ledger,
        reader: LedgerReader,
    ) -> None:
        self._config = config
        self._consumer = consumer
        self._jobs = jobs
        self._due = due
        self._publisher = publisher
        self._ledger = ledger
        self._reader = reader
        self._committed: dict[int, int] = {}

    def subscribe(self) -> None:
        self._consumer.subscribe([self._config.jobs_topic], listener=_Ownership(self))

    async def fetch_until(self, stop: asyncio.Event) -> None:
        last_commit = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._apply_backpressure()
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=1_000)
            await self._load_ledgers(fetched)
            for tp, records in fetched.items():
                for record in records:
                    # Not loaded: the partition went away (and perhaps came back) while its
                    # ledger was read; it is fetched again from its committed offset.
                    if tp in self._consumer.assignment() and self._ledger.loaded(tp.partition):
                        await self._accept(record)
            metrics.DELIVERY_PENDING.set(self._jobs.unfinished)
            if loop.time() - last_commit >= COMMIT_INTERVAL_S:
                await self.commit(self._jobs.partitions)
                self._prune_ledger()
                last_commit = loop.time()

    async def _load_ledgers(self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Before the first job of a partition it was given is taken, read its ledger back
        from the time that job was published: every job read from here on is at least that
        recent, since offsets are committed up to the earliest unfinished one."""
        assignment = self._consumer.assignment()
        anchors = {
            tp.partition: records[0].timestamp
            for tp, records in fetched.items()
            if records and tp in assignment and not self._ledger.loaded(tp.partition)
        }
        if anchors:
            await until_available(lambda: self._reader.rebuild(anchors))

    def _prune_ledger(self) -> None:
        """Forget what no job a restart would read again can need (see `_load_ledgers`)."""
        for partition in self._jobs.partitions:
            anchor = self._jobs.anchor_ms(partition)
            if anchor is not None:
                self._ledger.prune(partition, anchor - CLOCK_SKEW_MS)
        metrics.DELIVERY_LEDGER_JOBS.set(len(self._ledger))

    def _apply_backpressure(self) -> None:
        pending, cap = self._jobs.unfinished, self._config.max_pending
        over = pending >= cap
        assignment = self._consumer.assignment()
        if over and assignment - self._consumer.paused():
            log.info("%d jobs pending (cap %d): pausing fetch", pending, cap)
            self._consumer.pause(*assignment)
        elif not over and self._consumer.paused():
            self._consumer.resume(*self._consumer.paused())

    async def _accept(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self._jobs.read(record.partition, record.offset, record.timestamp)
        if is_withdrawal(record.headers):
            await self._withdraw(record)
            return
        try:
            job = parse_job(record.value)
        except InvalidJob as e:
            await self._publisher.dead_letter(record, str(e))
            self._jobs.skipped(record.partition, record.offset)
            return
        if self._jobs.holds(job.job_id):
            metrics.DELIVERIES.labels(DUPLICATE).inc()
            self._jobs.skipped(record.partition, record.offset)
            return
        pending = Pending(record.partition, record.offset, job)
        self._jobs.hold(pending)
        self._due.add(job.send_at_ms, pending)

    async def _withdraw(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            user_id, list_name = read_withdrawal(record.value)
        except InvalidJob as e:
            await self._publisher.dead_letter(record, str(e))
        else:
            withdraw(user_id, list_name, self._due, self._jobs)
        self._jobs.skipped(record.partition, record.offset)

    async def commit(self, partitions: set[int]) -> None:
        topic = self._config.jobs_topic
        positions = {p: pos for p in partitions if (pos := self._jobs.position(p)) is not None}
        for partition, position in positions.items():
            if self._jobs.idle(partition):
                # Past the transaction markers after the last job, which no record stands for:
                # a group that committed only to its last job would never read as caught up.
                tp = TopicPartition(topic, partition)
                with contextlib.suppress(IllegalStateError):
                    positions[partition] = max(position, await self._consumer.position(tp))
        changed = {TopicPartition(topic, p): pos for p, pos in positions.items() if self._committed.get(p) != pos}
        if not changed:
            return
        try:
            await self._consumer.commit(changed)
        except KafkaError as e:
            # A rebalance under way: the next owner re-reads a little more, and claims skip it.
            log.warning("could not commit delivery offsets: %r", e)
            return
        self._committed.update({tp.partition: pos for tp, pos in changed.items()})

    async def release(self, partitions: set[int]) -> None:
        """Give up partitions: drop their waiting jobs, let those being sent finish, commit."""
        self._jobs.revoke(partitions, waiting=self._due.remove_from(partitions))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while self._jobs.sending_from(partitions) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self.commit(partitions)
        for partition in partitions:
            self._committed.pop(partition, None)
        self._jobs.forget(partitions)
        self._ledger.forget(partitions)

    def assign(self, partitions: set[int]) -> None:
        self._jobs.own(partitions)
        log.info("delivering from partitions %s", sorted(self._jobs.partitions))


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: JobConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._consumer.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._consumer.assign({tp.partition for tp in assigned})
