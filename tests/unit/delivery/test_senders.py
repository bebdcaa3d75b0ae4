"""The senders' decisions with Redis lost or unreachable: the ledger (what the deliveries
topic holds) decides, against a fake producer, Redis and SMTP server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiosmtplib
import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from app.settings import Settings
from streams.core.clock import Clock
from streams.delivery import availability
from streams.delivery.claims import CLAIMED as REDIS_CLAIMED
from streams.delivery.claims import ClaimsUnavailable, Existing, read_existing
from streams.delivery.due import DueJobs
from streams.delivery.ledger import CLAIMED, RELEASED, Ledger
from streams.delivery.messages import parse_job
from streams.delivery.pending import Pending, PendingJobs
from streams.delivery.publisher import OutcomePublisher
from streams.delivery.senders import Senders
from streams.delivery.smtp import SmtpAttemptError
from tests.unit.delivery.test_messages import job_doc

CONFIG = replace(Settings().delivery, deliveries_topic="deliveries", max_attempts=3)


class FakeRedis:
    """Delivery claims in a dict; `down` makes every call fail as an unreachable Redis does."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.down = False

    async def claim(self, job_id: str, now_ms: int, replace_claim: bool = False) -> Existing | None:
        self._check()
        found = self.values.get(job_id)
        if found is not None and not (replace_claim and found.startswith(REDIS_CLAIMED)):
            return read_existing(found)
        self.values[job_id] = REDIS_CLAIMED + str(now_ms).encode()
        return None

    async def record(self, job_id: str, user_id: str, outcome: bytes) -> None:
        self._check()
        self.values[job_id] = outcome

    async def release(self, job_id: str) -> None:
        self._check()
        self.values.pop(job_id, None)

    def _check(self) -> None:
        if self.down:
            raise ClaimsUnavailable("cannot reach Redis")


class FakeProducer:
    """Acknowledges every record, or fails each send while `down`."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int | None, dict[str, Any]]] = []
        self.down = False
        self.failures = 0
        self.on_failure: Callable[[], None] = lambda: None

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if self.down:
            self.failures += 1
            self.on_failure()
            raise KafkaConnectionError("broker unreachable")
        self.records.append((topic, kwargs.get("partition"), orjson.loads(value)))

    def outcomes(self) -> list[str]:
        return [doc["outcome"] for topic, _, doc in self.records if topic == "deliveries"]


class FakeSmtp:
    """Accepts every message, except that each address in `greylisted` is refused once with 451."""

    def __init__(self, greylisted: set[str] | None = None) -> None:
        self.sent: list[str] = []
        self.greylisted = greylisted or set()

    async def send(self, envelope_from: str, to: str, message: bytes) -> None:
        if to in self.greylisted:
            self.greylisted.discard(to)
            raise SmtpAttemptError("rcpt", aiosmtplib.SMTPRecipientRefused(451, "greylisted", to))
        self.sent.append(to)


class Deliverer:
    """The senders with their fakes, for one partition whose ledger is loaded."""

    def __init__(self, records: list[tuple[str, str, int]] | None = None) -> None:
        self.redis, self.producer, self.smtp = FakeRedis(), FakeProducer(), FakeSmtp()
        self.ledger, self.jobs, self.due = Ledger(), PendingJobs(), DueJobs(Clock())
        self.ledger.load(0, 0, records or [])
        publisher = OutcomePublisher(CONFIG, self.producer, self.redis, self.jobs, self.ledger)  # type: ignore[arg-type]
        self.senders = Senders(CONFIG, Clock(), self.redis, self.ledger, self.jobs, self.due, publisher)  # type: ignore[arg-type]

    async def deliver(self, pending: Pending) -> None:
        self.jobs.hold(pending)
        await self.senders._deliver(pending, self.smtp)  # type: ignore[arg-type]


def pending(job_id: str = "j1") -> Pending:
    return Pending(0, 5, parse_job(orjson.dumps(job_doc(job_id=job_id))))


async def test_with_redis_unreachable_the_claim_on_the_topic_is_acknowledged_before_the_send() -> None:
    d = Deliverer()
    d.redis.down = True
    await d.deliver(pending())
    assert d.smtp.sent == ["ann@example.com"]
    assert d.producer.outcomes() == [CLAIMED, "sent"]
    assert [partition for _, partition, _ in d.producer.records] == [0, 0]
    entry = d.ledger.get(0, "j1")
    assert entry is not None and entry.state == "finished"
    assert not d.jobs.holds("j1")


async def test_a_job_finished_on_the_topic_is_not_sent_or_published_again_although_redis_forgot_it() -> None:
    d = Deliverer([("j1", CLAIMED, 100), ("j1", "sent", 200)])
    await d.deliver(pending())
    assert (d.smtp.sent, d.producer.records, d.redis.values) == ([], [], {})
    assert not d.jobs.holds("j1")


async def test_a_claim_on_the_topic_without_an_outcome_is_unconfirmed_when_redis_lost_it() -> None:
    d = Deliverer([("j1", CLAIMED, 1_795_852_800_000)])
    await d.deliver(pending())
    assert d.smtp.sent == []
    assert d.producer.outcomes() == ["unconfirmed"]
    reason = d.producer.records[0][2]["reason"]
    assert "claimed at 2026-11-28T08:00:00.000Z (on the deliveries topic)" in reason
    assert orjson.loads(d.redis.values["j1"])["outcome"] == "unconfirmed"


async def test_an_outcome_only_redis_holds_is_published_again_unchanged() -> None:
    d = Deliverer()
    earlier = {"job_id": "j1", "user_id": "ann", "outcome": "sent", "attempts": 1}
    d.redis.values["j1"] = orjson.dumps(earlier)
    await d.deliver(pending())
    assert (d.smtp.sent, [doc for _, _, doc in d.producer.records]) == ([], [earlier])


async def test_a_retry_takes_over_the_claim_redis_could_not_release() -> None:
    d = Deliverer()
    d.smtp.greylisted = {"ann@example.com"}
    job = pending()
    await d.deliver(job)
    assert d.producer.outcomes() == [CLAIMED, RELEASED]
    assert d.producer.records[1][2]["reason"].startswith("451")
    entry = d.ledger.get(0, "j1")
    assert entry is not None and entry.state == RELEASED
    # Redis came back with the first attempt's claim still there (its release failed).
    d.redis.values["j1"] = REDIS_CLAIMED + b"1"
    await d.deliver(job)
    assert d.smtp.sent == ["ann@example.com"]
    assert d.producer.outcomes() == [CLAIMED, RELEASED, CLAIMED, "sent"]
    assert job.attempts == 2


async def test_a_claim_kafka_never_acknowledged_is_given_up_when_the_partition_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(availability, "UNAVAILABLE_RETRY_S", 0.01)
    d = Deliverer()
    job = pending()
    d.producer.down = True
    d.producer.on_failure = lambda: setattr(job, "revoked", True)
    await d.deliver(job)
    assert d.producer.failures == 1
    assert (d.smtp.sent, d.producer.records) == ([], [])
    # Its Redis claim is given back: the next owner may send it.
    assert d.redis.values == {}
