"""Where a job's end goes: its outcome recorded in place of its claim (Redis) and published
to the deliveries topic, a hard bounce's event to the events topic, and a record that is no
job to the dead-letter topic."""

from __future__ import annotations

import functools
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from streams import metrics
from streams.delivery.availability import until_available
from streams.delivery.claims import DeliveryClaims
from streams.delivery.config import DeliveryConfig
from streams.delivery.messages import BOUNCED, INVALID, bounce_event
from streams.delivery.pending import Pending, PendingJobs

log = logging.getLogger(__name__)


class OutcomePublisher:
    """Records, publishes and counts outcomes; a job is finished once its outcome is acknowledged."""

    def __init__(
        self, config: DeliveryConfig, producer: AIOKafkaProducer, claims: DeliveryClaims, jobs: PendingJobs
    ) -> None:
        self._config = config
        self._producer = producer
        self._claims = claims
        self._jobs = jobs

    async def finish(self, pending: Pending, record: dict[str, Any]) -> None:
        """Record the outcome in place of the claim, publish it, count it."""
        encoded = orjson.dumps(record)
        await until_available(lambda: self._claims.record(pending.job.job_id, encoded))
        await self.publish(pending, record)
        metrics.DELIVERIES.labels(record["outcome"]).inc()

    async def publish(self, pending: Pending, record: dict[str, Any]) -> None:
        """The outcome (and a hard bounce's event), acknowledged; then the job is finished."""
        c, key = self._config, pending.job.user_id.encode()
        outputs = [(c.deliveries_topic, orjson.dumps(record))]
        if record["outcome"] == BOUNCED:
            outputs.append((c.events_topic, orjson.dumps(bounce_event(record))))
        for topic, value in outputs:
            await until_available(
                functools.partial(self._producer.send_and_wait, topic, value, key=key, partition=pending.partition)
            )
        self._jobs.finished(pending)

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
