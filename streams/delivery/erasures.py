"""Erased users at the deliverer: a job created before its user was erased is never sent.

The worker publishes a record to the erasures topic (`TIDEMAIL_ERASURES_TOPIC`) for each
user it erases, with `processed_at`, the instant on its clock. A job the worker built for
that person carries a `created_at` from the same clock no later than that, give or take the
clocks of two workers when the user's partition changed hands in between; a job created
more than `CLOCK_SKEW_MS` after it is the newly signed-up user's, and goes out. So a job is
dropped when its user has an erasure whose `processed_at` is at most `CLOCK_SKEW_MS` before
the job's `created_at`: jobs of someone signing up again within minutes of being erased are
dropped too, on the safe side.

The deliverer reads the whole topic before taking any job (its retention must cover the
jobs topic's), then follows it: each new erasure drops the user's jobs waiting for their
`send_at`, and every sender asks again just before it claims a job. The outcomes Redis
holds for an erased user's jobs are deleted as the erasure is read (again at every start,
which costs one round trip per `FORGET_BATCH` users, and until Redis answers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Final, Protocol

from aiokafka import AIOKafkaConsumer

from streams import metrics
from streams.core.errors import InvalidJob
from streams.delivery.claims import ClaimsUnavailable
from streams.delivery.due import DueJobs
from streams.delivery.messages import Job, parse_time, string_fields
from streams.delivery.pending import Pending, PendingJobs

log = logging.getLogger(__name__)

# How far two workers' clocks may disagree, as the ledger allows.
CLOCK_SKEW_MS: Final = 5 * 60_000
ERASED: Final = "erased"
# Users whose recorded outcomes one Redis round trip deletes.
FORGET_BATCH: Final = 500


class Forgetting(Protocol):
    async def forget_users(self, user_ids: list[str]) -> int: ...


class ErasedUsers:
    """The latest erasure of each user erased, by the instant the worker processed it."""

    def __init__(self) -> None:
        self._processed_ms: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._processed_ms)

    def note(self, user_id: str, processed_ms: int) -> None:
        self._processed_ms[user_id] = max(processed_ms, self._processed_ms.get(user_id, processed_ms))

    def covers(self, job: Job) -> bool:
        """Whether `job` may be for the person erased: created before the erasure, or too near it to tell."""
        processed_ms = self._processed_ms.get(job.user_id)
        if processed_ms is None:
            return False
        return job.created_at_ms is None or job.created_at_ms <= processed_ms + CLOCK_SKEW_MS


def read_erasure(value: bytes | None) -> tuple[str, int]:
    """The user and `processed_at` of an erasures-topic record; raise `InvalidJob` if it has none."""
    user_id, processed_at = string_fields(value, ("user_id", "processed_at"), "erasure record")
    return user_id, parse_time(processed_at, "processed_at")


def drop(pending: Pending, jobs: PendingJobs) -> None:
    """Finish a job of an erased user without sending it (nothing is published about it)."""
    log.info("job %s: its user was erased; not sent", pending.job.job_id)
    metrics.DELIVERIES.labels(ERASED).inc()
    jobs.finished(pending)


class ErasureFollower:
    """Reads the erasures topic into `ErasedUsers`, and drops the waiting jobs each new erasure covers."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        erased: ErasedUsers,
        due: DueJobs,
        jobs: PendingJobs,
        claims: Forgetting,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._erased = erased
        self._due = due
        self._jobs = jobs
        self._claims = claims
        # Erased users whose outcomes in Redis are still to be deleted.
        self._to_forget: list[str] = []

    async def catch_up(self) -> None:
        """Read every erasure up to the topic's end now: before any job is taken."""
        self._consumer.subscribe([self._topic])
        # With no group, the consumer takes every partition once it has the topic's metadata.
        while not self._consumer.assignment():
            self._note(await self._fetch())
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        while [tp for tp in tps if await self._consumer.position(tp) < ends[tp]]:
            self._note(await self._fetch())
        log.info("%d erased users known", len(self._erased))
        await self._forget()

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._note(await self._fetch()):
                for pending in self._due.remove_where(lambda p: self._erased.covers(p.job)):
                    drop(pending, self._jobs)
            await self._forget()

    async def _forget(self) -> None:
        while self._to_forget:
            batch = self._to_forget[:FORGET_BATCH]
            try:
                forgotten = await self._claims.forget_users(batch)
            except ClaimsUnavailable:
                return  # tried again after the next fetch
            del self._to_forget[:FORGET_BATCH]
            metrics.DELIVERY_OUTCOMES_FORGOTTEN.inc(forgotten)

    async def _fetch(self) -> Iterable[bytes | None]:
        fetched = await self._consumer.getmany(timeout_ms=200)
        return [record.value for records in fetched.values() for record in records]

    def _note(self, values: Iterable[bytes | None]) -> int:
        noted = 0
        for value in values:
            try:
                user_id, processed_ms = read_erasure(value)
            except InvalidJob as e:
                # Not one of the worker's: nothing to drop for it.
                log.warning("ignoring a record of the erasures topic: %s", e)
                continue
            self._erased.note(user_id, processed_ms)
            self._to_forget.append(user_id)
            noted += 1
        return noted


def erasures_consumer(bootstrap: str) -> AIOKafkaConsumer:
    """Not in a group: every deliverer reads every erasure, whichever jobs it is given."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
