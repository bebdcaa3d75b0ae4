"""Where a job's records go: its claim and its outcome to the deliveries topic (the durable
record, folded into the ledger as each is acknowledged) and to Redis (the fast path), a hard
bounce's event to the events topic, and a record that is no job to the dead-letter topic."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from streams import metrics
from streams.delivery.availability import until_available, until_available_unless
from streams.delivery.claims import ClaimsUnavailable, DeliveryClaims
from streams.delivery.config import DeliveryConfig
from streams.delivery.ledger import CLAIMED, RELEASED, Ledger
from streams.delivery.messages import BOUNCED, INVALID, bounce_event
from streams.delivery.pending import Pending, PendingJobs

log = logging.getLogger(__name__)


class OutcomePublisher:
    """Publishes, records and counts a job's claim and outcome; a job is finished once its
    outcome is acknowledged."""

    def __init__(
        self,
        config: DeliveryConfig,
        producer: AIOKafkaProducer,
        claims: DeliveryClaims,
        jobs: PendingJobs,
        ledger: Ledger,
    ) -> None:
        self._config = config
        self._producer = producer
        self._claims = claims
        self._jobs = jobs
        self._ledger = ledger

    async def claim(self, pending: Pending, record: dict[str, Any], give_up: Callable[[], bool]) -> bool:
        """Publish the claim and wait for the broker to acknowledge it (acks=all): only then
        may the job be sent. False if `give_up()` turned true while Kafka was unreachable."""
        at_ms = await until_available_unless(functools.partial(self._deliveries, pending, record), give_up)
        if at_ms is None:
            return False
        self._ledger.apply(pending.partition, pending.job.job_id, CLAIMED, at_ms)
        return True

    async def release(self, pending: Pending, record: dict[str, Any]) -> None:
        """Give the claim up after an attempt that certainly sent nothing, so a retry (or, after
        a restart, the next reader) may claim it again."""
        at_ms = await until_available(functools.partial(self._deliveries, pending, record))
        self._ledger.apply(pending.partition, pending.job.job_id, RELEASED, at_ms)
        # Left in Redis, the claim is replaced by the retry's (the ledger says it was released).
        with contextlib.suppress(ClaimsUnavailable):
            await self._claims.release(pending.job.job_id)

    async def finish(self, pending: Pending, record: dict[str, Any]) -> None:
        """Record the outcome in place of the claim, publish it, count it."""
        with contextlib.suppress(ClaimsUnavailable):
            await self._claims.record(pending.job.job_id, pending.job.user_id, orjson.dumps(record))
        await self.publish(pending, record)
        metrics.DELIVERIES.labels(record["outcome"]).inc()

    async def publish(self, pending: Pending, record: dict[str, Any]) -> None:
        """The outcome (and a hard bounce's event), acknowledged; then the job is finished."""
        at_ms = await until_available(functools.partial(self._deliveries, pending, record))
        self._ledger.apply(pending.partition, pending.job.job_id, record["outcome"], at_ms)
        if record["outcome"] == BOUNCED:
            value, key = orjson.dumps(bounce_event(record)), pending.job.user_id.encode()
            topic = self._config.events_topic
            send = functools.partial(self._producer.send_and_wait, topic, value, key=key, partition=pending.partition)
            await until_available(send)
        self._jobs.finished(pending)

    async def _deliveries(self, pending: Pending, record: dict[str, Any]) -> int:
        """Send one record to the deliveries topic, keyed and partitioned like the job; return
        its timestamp once acknowledged."""
        at_ms = int(time.time() * 1000)
        await self._producer.send_and_wait(
            self._config.deliveries_topic,
            orjson.dumps(record),
            key=pending.job.user_id.encode(),
            partition=pending.partition,
            timestamp_ms=at_ms,
        )
        return at_ms

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.warning("job record %d:%d dead-lettered: %s", record.partition, record.offset, reason)
        headers = [
            ("tidemail.kind", b"invalid_job"),
            ("tidemail.reason", reason.encode()),
            ("tidemail.source.topic", record.topic.encode()),
            ("tidemail.source.partition", str(record.partition).encode()),
            ("tidemail.source.offset", str(record.offset).encode()),
            ("tidemail.id", f"{record.partition}:{record.offset}:invalid_job".encode()),
        ]
        await until_available(
            lambda: self._producer.send_and_wait(
                self._config.dead_letter_topic,
                record.value,
                key=record.key,
                partition=record.partition,
                headers=headers,
            )
        )
        metrics.DEAD_LETTERS.labels("invalid_job").inc()
        metrics.DELIVERIES.labels(INVALID).inc()
