"""The send loop: take a due job, claim it in Redis, send it over SMTP, then record and
publish its outcome, or give the claim up and schedule a retry."""

from __future__ import annotations

import logging
from email import policy

from streams import metrics
from streams.core.clock import Clock
from streams.core.jobs import format_time
from streams.delivery.availability import unavailable, until_available
from streams.delivery.claims import ClaimsUnavailable, DeliveryClaims, Existing
from streams.delivery.config import DeliveryConfig
from streams.delivery.due import DueJobs
from streams.delivery.messages import (
    BOUNCED,
    DUPLICATE,
    FAILED,
    SENT,
    UNCONFIRMED,
    Verdict,
    backoff_ms,
    build_message,
    classify,
    outcome_record,
)
from streams.delivery.pending import Pending, PendingJobs
from streams.delivery.publisher import OutcomePublisher
from streams.delivery.smtp import SmtpAttemptError, SmtpSession

log = logging.getLogger(__name__)

OUTCOMES = {Verdict.RETRY: FAILED, Verdict.BOUNCE: BOUNCED, Verdict.FAIL: FAILED, Verdict.UNCERTAIN: UNCONFIRMED}


class Abandoned:
    """A claim not made: the partition was revoked, or the process is stopping, while Redis was down."""


class Senders:
    """What every sender shares; each runs `run` with its own SMTP connection."""

    def __init__(
        self,
        config: DeliveryConfig,
        clock: Clock,
        claims: DeliveryClaims,
        jobs: PendingJobs,
        due: DueJobs,
        publisher: OutcomePublisher,
    ) -> None:
        self._config = config
        self._clock = clock
        self._claims = claims
        self._jobs = jobs
        self._due = due
        self._publisher = publisher
        # Set on stop: senders finish the send under way and take no other.
        self.stopping = False

    async def run(self) -> None:
        smtp = SmtpSession(self._config.smtp, self._config.sender.domain)
        try:
            while not self.stopping:
                pending = await self._due.next()
                if pending is None or pending.revoked:
                    continue
                self._jobs.sending(pending)
                try:
                    await self._deliver(pending, smtp)
                except Exception:
                    # A bug of ours: the job stays unfinished (so its offset is not
                    # committed past) and this sender goes on with the next one.
                    log.exception("job %s: unexpected error while delivering", pending.job.job_id)
                finally:
                    self._jobs.not_sending(pending)
        finally:
            await smtp.close()

    async def _deliver(self, pending: Pending, smtp: SmtpSession) -> None:
        job, sender = pending.job, self._config.sender
        existing = await self._claim(pending)
        if isinstance(existing, Abandoned):
            return
        if isinstance(existing, Existing):
            await self._already_claimed(pending, existing)
            return
        pending.attempts += 1
        now = self._clock.now_ms()
        try:
            message = build_message(job, sender, now).as_bytes(policy=policy.SMTP)
        except ValueError as e:
            # A header the email package refuses (a line break in the subject, say).
            log.warning("job %s cannot be built: %s", job.job_id, e)
            record = outcome_record(job, FAILED, pending.attempts, now, None, f"cannot build: {e}")
            await self._publisher.finish(pending, record)
            return
        try:
            await smtp.send(sender.address, job.to, message)
        except SmtpAttemptError as e:
            failure = classify(e.error, e.phase)
            if failure.verdict is Verdict.RETRY and pending.attempts < self._config.max_attempts:
                await self._retry_later(pending, failure.reason)
                return
            log.warning("job %s to %s: %s after %d attempts", job.job_id, job.to, failure.reason, pending.attempts)
            record = outcome_record(
                job, OUTCOMES[failure.verdict], pending.attempts, self._clock.now_ms(), failure.code, failure.reason
            )
        else:
            sent_at = self._clock.now_ms()
            metrics.DELIVERY_DELAY.observe(max(0, sent_at - job.send_at_ms) / 1000)
            record = outcome_record(job, SENT, pending.attempts, sent_at, 250, None)
        await self._publisher.finish(pending, record)

    async def _claim(self, pending: Pending) -> Existing | Abandoned | None:
        """Claim the job (None), find it claimed before (`Existing`), or give up (`Abandoned`)."""
        while True:
            if pending.revoked or self.stopping:
                return Abandoned()
            try:
                return await self._claims.claim(pending.job.job_id, self._clock.now_ms())
            except ClaimsUnavailable as e:
                await unavailable(e)

    async def _already_claimed(self, pending: Pending, existing: Existing) -> None:
        if existing.outcome is not None:
            # Finished before: a second record of the job, or re-read after a restart. Its
            # outcome is published again unchanged, so that a crash between recording and
            # publishing it loses nothing.
            metrics.DELIVERIES.labels(DUPLICATE).inc()
            await self._publisher.publish(pending, existing.outcome)
            return
        # Claimed, but no outcome recorded: a process died between claim and result. It
        # may have sent the email, so it is never sent again; the outcome says so.
        claimed_at = format_time(existing.claimed_at_ms or 0)
        reason = f"claimed at {claimed_at} by an attempt that recorded no outcome; not sent again (at most once)"
        log.warning("job %s: %s", pending.job.job_id, reason)
        record = outcome_record(pending.job, UNCONFIRMED, pending.attempts, self._clock.now_ms(), None, reason)
        await self._publisher.finish(pending, record)

    async def _retry_later(self, pending: Pending, reason: str) -> None:
        # Nothing was accepted, so the claim is given up: a restart during the wait sends it afresh.
        await until_available(lambda: self._claims.release(pending.job.job_id))
        c = self._config
        delay = backoff_ms(pending.attempts, c.retry_base_ms, c.retry_max_ms)
        log.info("job %s attempt %d: %s; retrying in %d ms", pending.job.job_id, pending.attempts, reason, delay)
        metrics.DELIVERY_RETRIES.inc()
        self._due.add(self._clock.now_ms() + delay, pending)
