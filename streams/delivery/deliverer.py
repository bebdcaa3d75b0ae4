"""`tidemail deliver`: reads email jobs, waits for each one's `send_at`, and sends it over
SMTP at most once per job id (see README, Delivery).

Shape: one fetch loop (consumer group `<app id>-deliver`) puts jobs into a schedule; a
scheduler moves due jobs to a queue; `delivery_concurrency` senders, each with its own SMTP
connection, claim, send, record and publish. Offsets are committed up to the earliest
job not finished, per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from email import policy
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from app.api import prometheus_metrics
from app.settings import Settings
from streams import metrics
from streams.core.clock import Clock
from streams.core.errors import InvalidJob
from streams.core.jobs import format_time
from streams.delivery.claims import ClaimsUnavailable, DeliveryClaims, Existing
from streams.delivery.messages import (
    BOUNCED,
    DUPLICATE,
    FAILED,
    INVALID,
    SENT,
    UNCONFIRMED,
    Job,
    Sender,
    Verdict,
    backoff_ms,
    bounce_event,
    build_message,
    classify,
    outcome_record,
    parse_job,
)
from streams.delivery.schedule import OffsetTracker, Schedule
from streams.delivery.smtp import SmtpAttemptError, SmtpSession

log = logging.getLogger(__name__)

OUTCOMES = {Verdict.RETRY: FAILED, Verdict.BOUNCE: BOUNCED, Verdict.FAIL: FAILED, Verdict.UNCERTAIN: UNCONFIRMED}
# How often the scheduler looks at the clock at the least: a test may move it at any time.
TICK_S = 0.2
COMMIT_INTERVAL_S = 1.0
# Redis or Kafka down: try again this often, without sending anything meanwhile.
UNAVAILABLE_RETRY_S = 1.0
DRAIN_TIMEOUT_S = 30.0


@dataclass(eq=False, slots=True)
class Pending:
    """A job read from `partition` at `offset` and not finished yet."""

    partition: int
    offset: int
    job: Job
    attempts: int = 0
    revoked: bool = False


class Deliverer:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._sender = Sender(settings.mail_from_address, settings.mail_from_name)
        self._schedule: Schedule[Pending] = Schedule()
        self._offsets = OffsetTracker()
        self._due: asyncio.Queue[Pending] = asyncio.Queue()
        # Every job held in this process by id: a second record of it is a duplicate at once.
        self._held: dict[str, Pending] = {}
        self._sending: set[Pending] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._committed: dict[int, int] = {}
        self.assigned: set[int] = set()

    @property
    def pending(self) -> int:
        return self._offsets.unfinished()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._claims = DeliveryClaims(s.redis_url, s.app_id, s.delivery_claim_ttl_s)
        self._producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=f"{s.app_id}-deliver",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.kafka_session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.kafka_session_timeout_s * 200),
        )
        await self._producer.start()
        await self._consumer.start()
        try:
            self._consumer.subscribe([s.jobs_topic], listener=_Ownership(self))
            senders = [asyncio.create_task(self._send_loop()) for _ in range(s.delivery_concurrency)]
            scheduler = asyncio.create_task(self._schedule_loop())
            await self._fetch_loop(stop)
            await self._drain(senders, scheduler)
        finally:
            await self._consumer.stop()
            await self._producer.stop()
            await self._claims.close()

    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        last_commit = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._apply_backpressure()
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=1_000)
            for tp, records in fetched.items():
                for record in records:
                    if tp in self._consumer.assignment():
                        await self._accept(record)
            metrics.DELIVERY_PENDING.set(self.pending)
            if loop.time() - last_commit >= COMMIT_INTERVAL_S:
                await self._commit(self.assigned)
                last_commit = loop.time()

    def _apply_backpressure(self) -> None:
        over = self.pending >= self.settings.delivery_max_pending
        assignment = self._consumer.assignment()
        if over and assignment - self._consumer.paused():
            log.info("%d jobs pending (cap %d): pausing fetch", self.pending, self.settings.delivery_max_pending)
            self._consumer.pause(*assignment)
        elif not over and self._consumer.paused():
            self._consumer.resume(*self._consumer.paused())

    async def _accept(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self._offsets.started(record.partition, record.offset)
        try:
            job = parse_job(record.value)
        except InvalidJob as e:
            await self._dead_letter(record, str(e))
            self._offsets.finished(record.partition, record.offset)
            return
        if job.job_id in self._held:
            metrics.DELIVERIES.labels(DUPLICATE).inc()
            self._offsets.finished(record.partition, record.offset)
            return
        pending = Pending(record.partition, record.offset, job)
        self._held[job.job_id] = pending
        self._schedule.add(job.send_at_ms, pending)
        self._wake.set()

    async def _schedule_loop(self) -> None:
        while True:
            now = self.clock.now_ms()
            for pending in self._schedule.pop_due(now):
                self._due.put_nowait(pending)
            next_due = self._schedule.next_due_ms()
            wait = TICK_S if next_due is None else min(TICK_S, max(0, next_due - now) / 1000)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _send_loop(self) -> None:
        smtp = SmtpSession(self.settings)
        try:
            while not self._stopping:
                try:
                    pending = await asyncio.wait_for(self._due.get(), TICK_S)
                except TimeoutError:
                    continue
                if not pending.revoked:
                    self._sending.add(pending)
                    try:
                        await self._deliver(pending, smtp)
                    except Exception:
                        # A bug of ours: the job stays unfinished (so its offset is not
                        # committed past) and this sender goes on with the next one.
                        log.exception("job %s: unexpected error while delivering", pending.job.job_id)
                    finally:
                        self._sending.discard(pending)
        finally:
            await smtp.close()

    async def _deliver(self, pending: Pending, smtp: SmtpSession) -> None:
        job = pending.job
        existing = await self._claim(pending)
        if existing is _ABANDONED:
            return
        if isinstance(existing, Existing):
            await self._already_claimed(pending, existing)
            return
        pending.attempts += 1
        now = self.clock.now_ms()
        try:
            message = build_message(job, self._sender, now).as_bytes(policy=policy.SMTP)
        except ValueError as e:
            # A header the email package refuses (a line break in the subject, say).
            log.warning("job %s cannot be built: %s", job.job_id, e)
            await self._finish(pending, outcome_record(job, FAILED, pending.attempts, now, None, f"cannot build: {e}"))
            return
        try:
            await smtp.send(self._sender.address, job.to, message)
        except SmtpAttemptError as e:
            failure = classify(e.error, e.phase)
            if failure.verdict is Verdict.RETRY and pending.attempts < self.settings.delivery_max_attempts:
                await self._retry_later(pending, failure.reason)
                return
            log.warning("job %s to %s: %s after %d attempts", job.job_id, job.to, failure.reason, pending.attempts)
            record = outcome_record(
                job, OUTCOMES[failure.verdict], pending.attempts, self.clock.now_ms(), failure.code, failure.reason
            )
        else:
            sent_at = self.clock.now_ms()
            metrics.DELIVERY_DELAY.observe(max(0, sent_at - job.send_at_ms) / 1000)
            record = outcome_record(job, SENT, pending.attempts, sent_at, 250, None)
        await self._finish(pending, record)

    async def _finish(self, pending: Pending, record: dict[str, Any]) -> None:
        """Record the outcome in place of the claim, publish it, count it."""
        encoded = orjson.dumps(record)
        await self._until_available(lambda: self._claims.record(pending.job.job_id, encoded))
        await self._publish(pending, record)
        metrics.DELIVERIES.labels(record["outcome"]).inc()

    async def _claim(self, pending: Pending) -> Existing | object | None:
        """Claim the job (None), find it claimed before (`Existing`), or give up (`_ABANDONED`)
        because the partition was revoked or the process is stopping while Redis is down."""
        while True:
            if pending.revoked or self._stopping:
                return _ABANDONED
            try:
                return await self._claims.claim(pending.job.job_id, self.clock.now_ms())
            except ClaimsUnavailable as e:
                self._unavailable(e)
                await asyncio.sleep(UNAVAILABLE_RETRY_S)

    async def _already_claimed(self, pending: Pending, existing: Existing) -> None:
        if existing.outcome is not None:
            # Finished before: a second record of the job, or re-read after a restart. Its
            # outcome is published again unchanged, so that a crash between recording and
            # publishing it loses nothing.
            metrics.DELIVERIES.labels(DUPLICATE).inc()
            await self._publish(pending, existing.outcome)
            return
        # Claimed, but no outcome recorded: a process died between claim and result. It
        # may have sent the email, so it is never sent again; the outcome says so.
        claimed_at = format_time(existing.claimed_at_ms or 0)
        reason = f"claimed at {claimed_at} by an attempt that recorded no outcome; not sent again (at most once)"
        log.warning("job %s: %s", pending.job.job_id, reason)
        await self._finish(
            pending, outcome_record(pending.job, UNCONFIRMED, pending.attempts, self.clock.now_ms(), None, reason)
        )

    async def _retry_later(self, pending: Pending, reason: str) -> None:
        # Nothing was accepted, so the claim is given up: a restart during the wait sends it afresh.
        await self._until_available(lambda: self._claims.release(pending.job.job_id))
        s = self.settings
        delay = backoff_ms(pending.attempts, s.delivery_retry_base_ms, s.delivery_retry_max_ms)
        log.info("job %s attempt %d: %s; retrying in %d ms", pending.job.job_id, pending.attempts, reason, delay)
        metrics.DELIVERY_RETRIES.inc()
        self._schedule.add(self.clock.now_ms() + delay, pending)
        self._wake.set()

    async def _publish(self, pending: Pending, record: dict[str, Any]) -> None:
        """The outcome (and a hard bounce's event), acknowledged; then the job is finished."""
        s, key = self.settings, pending.job.user_id.encode()
        outputs = [(s.deliveries_topic, orjson.dumps(record))]
        if record["outcome"] == BOUNCED:
            outputs.append((s.events_topic, orjson.dumps(bounce_event(record))))
        for topic, value in outputs:
            await self._until_available(
                lambda t=topic, v=value: self._producer.send_and_wait(t, v, key=key, partition=pending.partition)
            )
        self._held.pop(pending.job.job_id, None)
        self._offsets.finished(pending.partition, pending.offset)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.warning("job record %d:%d dead-lettered: %s", record.partition, record.offset, reason)
        headers = [
            ("tidemail.kind", b"invalid_job"),
            ("tidemail.reason", reason.encode()),
            ("tidemail.source.topic", record.topic.encode()),
            ("tidemail.source.partition", str(record.partition).encode()),
            ("tidemail.source.offset", str(record.offset).encode()),
            ("tidemail.id", f"{record.partition}:{record.offset}:invalid_job".encode()),
        ]
        await self._until_available(
            lambda: self._producer.send_and_wait(
                self.settings.dead_letter_topic,
                record.value,
                key=record.key,
                partition=record.partition,
                headers=headers,
            )
        )
        metrics.DEAD_LETTERS.labels("invalid_job").inc()
        metrics.DELIVERIES.labels(INVALID).inc()

    async def _until_available(self, call: Any) -> Any:
        """Run `call()` until Redis or Kafka answers: a result must be recorded, never skipped."""
        while True:
            try:
                return await call()
            except (ClaimsUnavailable, KafkaError) as e:
                self._unavailable(e)
                await asyncio.sleep(UNAVAILABLE_RETRY_S)

    def _unavailable(self, error: Exception) -> None:
        if isinstance(error, ClaimsUnavailable):
            metrics.DELIVERY_CLAIMS_UNAVAILABLE.inc()
        log.warning("%s; retrying in %.0f s, sending nothing meanwhile", error, UNAVAILABLE_RETRY_S)

    async def _commit(self, partitions: set[int]) -> None:
        topic = self.settings.jobs_topic
        positions = {p: pos for p in partitions if (pos := self._offsets.position(p)) is not None}
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
        for pending in self._held.values():
            if pending.partition in partitions:
                pending.revoked = True
        for pending in self._schedule.remove_where(lambda p: p.partition in partitions):
            self._held.pop(pending.job.job_id, None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while any(p.partition in partitions for p in self._sending) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._commit(partitions)
        for partition in partitions:
            self._offsets.forget(partition)
            self._committed.pop(partition, None)
        self._held = {job_id: p for job_id, p in self._held.items() if p.partition not in partitions}
        self.assigned -= partitions

    async def _drain(self, senders: list[asyncio.Task[None]], scheduler: asyncio.Task[None]) -> None:
        """Stop: finish the sends under way (not the jobs waiting), then commit."""
        self._stopping = True
        scheduler.cancel()
        done, still_running = await asyncio.wait(senders, timeout=DRAIN_TIMEOUT_S)
        for task in (*still_running, scheduler):
            task.cancel()
        await asyncio.gather(*still_running, scheduler, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                log.error("a sender failed: %r", task.exception())
        await self._commit(self.assigned)


_ABANDONED = object()


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, deliverer: Deliverer) -> None:
        self._deliverer = deliverer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._deliverer.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._deliverer.assigned |= {tp.partition for tp in assigned}
        log.info("delivering from partitions %s", sorted(self._deliverer.assigned))


DELIVERER = web.AppKey("deliverer", Deliverer)


def web_app(deliverer: Deliverer) -> web.Application:
    """/health, /metrics, and /admin/clock only when clock control is allowed (tests, demos)."""
    app = web.Application()
    app[DELIVERER] = deliverer
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", prometheus_metrics)
    if deliverer.settings.allow_clock_control:
        app.router.add_post("/admin/clock", _advance_clock)
    return app


async def _health(request: web.Request) -> web.Response:
    deliverer = request.app[DELIVERER]
    body = {"status": "ok", "assigned_partitions": sorted(deliverer.assigned), "pending": deliverer.pending}
    return web.json_response(body)


async def _advance_clock(request: web.Request) -> web.Response:
    deliverer = request.app[DELIVERER]
    body = await request.json()
    deliverer.clock.advance(int(body["advance_ms"]))
    return web.json_response({"now_ms": deliverer.clock.now_ms()})
