"""The send loop: take a due job, look it up in the ledger, claim it in Redis (the fast path)
and on the deliveries topic (the durable record), send it over SMTP, then record and publish
its outcome, or give the claim up and schedule a retry."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from email import policy

from streams import metrics
from streams.core.clock import Clock
from streams.core.jobs import format_time
from streams.delivery.claims import ClaimsUnavailable, DeliveryClaims, Existing
from streams.delivery.config import DeliveryConfig
from streams.delivery.due import DueJobs
from streams.delivery.erasures import ErasedUsers
from streams.delivery.erasures import drop as drop_erased
from streams.delivery.ledger import CLAIMED, FINISHED, RELEASED, Ledger, claim_record, release_record
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


class Senders:
    """What every sender shares; each runs `run` with its own SMTP connection."""

    def __init__(
        self,
        config: DeliveryConfig,
        clock: Clock,
        claims: DeliveryClaims,
        ledger: Ledger,
        jobs: PendingJobs,
        due: DueJobs,
        publisher: OutcomePublisher,
        erased: ErasedUsers | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._claims = claims
        self._ledger = ledger
        self._jobs = jobs
        self._due = due
        self._publisher = publisher
        # Not `erased or ...`: an ErasedUsers with no one in it yet is falsy, and the senders
        # would keep an empty one of their own that the erasures topic never fills.
        self._erased = erased if erased is not None else ErasedUsers()
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
        job = pending.job
        if self._erased.covers(job):
            drop_erased(pending, self._jobs)
            return
        known = self._ledger.get(pending.partition, job.job_id)
        if known is not None and known.state == FINISHED:
            # Its outcome is on the deliveries topic already: a second record of the job, or
            # re-read after a restart.
            metrics.DELIVERIES.labels(DUPLICATE).inc()
            self._jobs.finished(pending)
            return
        existing = await self._claim_in_redis(pending, replace_claim=known is not None and known.state == RELEASED)
        if existing is not None:
            await self._already_claimed(pending, existing)
            return
        if known is not None and known.state == CLAIMED:
            # Redis forgot (lost, or unreachable): the deliveries topic remembers the claim.
            await self._unconfirmed(pending, known.at_ms, "on the deliveries topic")
            return
        await self._attempt(pending, smtp)

    async def _attempt(self, pending: Pending, smtp: SmtpSession) -> None:
        job, sender = pending.job, self._config.sender
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
        if not await self._publisher.claim(pending, claim_record(job, pending.attempts, now), self._giving_up(pending)):
            # Never claimed durably, so certainly not sent: whoever reads the job next may send it.
            with contextlib.suppress(ClaimsUnavailable):
                await self._claims.release(job.job_id)
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

    def _giving_up(self, pending: Pending) -> Callable[[], bool]:
        return lambda: pending.revoked or self.stopping

    async def _claim_in_redis(self, pending: Pending, replace_claim: bool) -> Existing | None:
        """What Redis already holds for the job, or None: claimed now, or Redis unreachable
        (then the deliveries topic alone decides)."""
        try:
            return await self._claims.claim(pending.job.job_id, self._clock.now_ms(), replace_claim)
        except ClaimsUnavailable:
            return None

    async def _already_claimed(self, pending: Pending, existing: Existing) -> None:
        if existing.outcome is not None:
            # Finished before, beyond what the ledger holds, or its outcome recorded here but
            # not yet published when a process died: published again, unchanged.
            metrics.DELIVERIES.labels(DUPLICATE).inc()
            await self._publisher.publish(pending, existing.outcome)
            return
        await self._unconfirmed(pending, existing.claimed_at_ms or 0, "in Redis")

    async def _unconfirmed(self, pending: Pending, claimed_at_ms: int, where: str) -> None:
        # Claimed, but no outcome recorded: a process died between claim and result. It may
        # have sent the email, so it is never sent again; the outcome says so.
        claimed_at = format_time(claimed_at_ms)
        reason = (
            f"claimed at {claimed_at} ({where}) by an attempt that recorded no outcome; not sent again (at most once)"
        )
        log.warning("job %s: %s", pending.job.job_id, reason)
        record = outcome_record(pending.job, UNCONFIRMED, pending.attempts, self._clock.now_ms(), None, reason)
        await self._publisher.finish(pending, record)

    async def _retry_later(self, pending: Pending, reason: str) -> None:
        # Nothing was accepted, so the claim is given up: a restart during the wait sends it afresh.
        record = release_record(pending.job, pending.attempts, self._clock.now_ms(), reason)
        await self._publisher.release(pending, record)
        c = self._config
        delay = backoff_ms(pending.attempts, c.retry_base_ms, c.retry_max_ms)
        log.info("job %s attempt %d: %s; retrying in %d ms", pending.job.job_id, pending.attempts, reason, delay)
        metrics.DELIVERY_RETRIES.inc()
        self._due.add(self._clock.now_ms() + delay, pending)
