"""`tidemail deliver`: reads email jobs, waits for each one's `send_at`, and sends it over
SMTP at most once per job id (see docs/delivery.md).

Shape: one fetch loop (`JobConsumer`) puts jobs into a schedule; a scheduler (`DueJobs`)
moves due jobs to a queue; `concurrency` senders (`Senders`), each with its own SMTP
connection, claim, send, record and publish (`OutcomePublisher`). Offsets are committed up
to the earliest job not finished, per partition. What was claimed and finished is known from
the deliveries topic (`Ledger`, read back by `LedgerReader` whenever partitions are given).
Jobs of users the worker erased are dropped (`ErasureFollower`, reading the erasures topic).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from streams.consumer_lag import ConsumerLag, follow_lag
from streams.core.clock import Clock
from streams.delivery.claims import DeliveryClaims
from streams.delivery.config import DeliveryConfig
from streams.delivery.consumer import DRAIN_TIMEOUT_S, JobConsumer, jobs_consumer
from streams.delivery.due import DueJobs
from streams.delivery.erasures import ErasedUsers, ErasureFollower, erasures_consumer
from streams.delivery.ledger import Ledger
from streams.delivery.pending import PendingJobs
from streams.delivery.publisher import OutcomePublisher
from streams.delivery.rebuild import LedgerReader, ledger_consumer
from streams.delivery.senders import Senders

log = logging.getLogger(__name__)


class Deliverer:
    """Creates the deliverer's clients when it runs, and starts and stops its parts in order."""

    def __init__(self, config: DeliveryConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.jobs = PendingJobs()
        self.ledger = Ledger()
        self._due = DueJobs(clock)
        self.erased = ErasedUsers()

    @property
    def pending(self) -> int:
        return self.jobs.unfinished

    @property
    def assigned(self) -> set[int]:
        return self.jobs.partitions

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        claims = DeliveryClaims(c.redis_url, c.app_id, c.claim_ttl_s)
        producer = AIOKafkaProducer(bootstrap_servers=c.kafka_bootstrap, acks="all", linger_ms=5)
        consumer, reader = jobs_consumer(c), ledger_consumer(c)
        erasures = erasures_consumer(c.kafka_bootstrap)
        await producer.start()
        await reader.start()
        await erasures.start()
        await consumer.start()
        try:
            follower = ErasureFollower(erasures, c.erasures_topic, self.erased, self._due, self.jobs, claims)
            await follower.catch_up()
            publisher = OutcomePublisher(c, producer, claims, self.jobs, self.ledger)
            rebuild = LedgerReader(c, reader, self.ledger)
            intake = JobConsumer(c, consumer, self.jobs, self._due, publisher, self.ledger, rebuild)
            senders = Senders(c, self.clock, claims, self.ledger, self.jobs, self._due, publisher, self.erased)
            intake.subscribe()
            sending = [asyncio.create_task(senders.run()) for _ in range(c.concurrency)]
            scheduler = asyncio.create_task(self._due.run())
            lag = asyncio.create_task(follow_lag(ConsumerLag(c.jobs_topic), consumer, stop))
            following = asyncio.create_task(follower.follow(stop))
            await intake.fetch_until(stop)
            await _drain(senders, sending, scheduler)
            await asyncio.gather(lag, following)
            await intake.commit(self.jobs.partitions)
        finally:
            await consumer.stop()
            await erasures.stop()
            await reader.stop()
            await producer.stop()
            await claims.close()


async def _drain(senders: Senders, sending: list[asyncio.Task[None]], scheduler: asyncio.Task[None]) -> None:
    """Stop: finish the sends under way (not the jobs waiting)."""
    senders.stopping = True
    scheduler.cancel()
    done, still_running = await asyncio.wait(sending, timeout=DRAIN_TIMEOUT_S)
    for task in (*still_running, scheduler):
        task.cancel()
    await asyncio.gather(*still_running, scheduler, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            log.error("a sender failed: %r", task.exception())
