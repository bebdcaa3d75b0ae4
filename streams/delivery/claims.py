"""Delivery claims in Redis: the fast path of at most once per job id.

A key per job, `tidemail:<app id>:delivery:<job id>`, written with `SET NX` before the
first SMTP attempt (`claimed:<epoch ms>`) and overwritten with the job's outcome record
once the outcome is known. Whoever does not win the `SET NX` must not send. An outcome names
its user (an SMTP reply may even quote the address), so each user's finished job ids are
kept in a set beside them (`...:delivery-user:<user id>`) for an erasure to delete. The durable
record is the deliveries topic (`ledger`): Redis may be lost or unreachable, and then the
deliverer goes on without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from streams import metrics
from streams.core.errors import TidemailError

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIMED = b"claimed:"
# While Redis is failing, how long calls skip it before one tries again: a timeout per
# email would otherwise slow every sender to one email per timeout.
RETRY_AFTER_S = 1.0


class ClaimsUnavailable(TidemailError):
    """Redis did not answer (or failed moments ago); the caller goes on without it."""


@dataclass(frozen=True, slots=True)
class Existing:
    """What an earlier claim left: its outcome record, or only the instant it was claimed."""

    claimed_at_ms: int | None
    outcome: dict[str, Any] | None


def read_existing(value: bytes) -> Existing:
    if value.startswith(CLAIMED):
        return Existing(int(value[len(CLAIMED) :]), None)
    return Existing(None, orjson.loads(value))


class DeliveryClaims:
    def __init__(self, url: str, namespace: str, ttl_s: int) -> None:
        # Namespaced by app id: deployments (and test runs) sharing a Redis never share claims.
        self._prefix = f"tidemail:{namespace}:delivery:"
        self._user_prefix = f"tidemail:{namespace}:delivery-user:"
        self._redis = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._ttl_s = ttl_s
        self._skip_until = 0.0

    async def claim(self, job_id: str, now_ms: int, replace_claim: bool = False) -> Existing | None:
        """Claim the job: None if this call did, else what is already there. With
        `replace_claim`, a bare claim left there (its release failed) is taken over."""
        return await self._call(
            lambda: self._claim(self._prefix + job_id, CLAIMED + str(now_ms).encode(), replace_claim)
        )

    async def _claim(self, key: str, value: bytes, replace_claim: bool) -> Existing | None:
        while True:
            if await self._redis.set(key, value, nx=True, ex=self._ttl_s):
                return None
            found = await self._redis.get(key)
            # None: released (a retry pending elsewhere) or expired between the two calls.
            if isinstance(found, bytes):
                existing = read_existing(found)
                if not (replace_claim and existing.outcome is None):
                    return existing
                await self._redis.set(key, value, ex=self._ttl_s)
                return None

    async def record(self, job_id: str, user_id: str, outcome: bytes) -> None:
        """Replace the claim with the job's outcome record, filed under its user."""
        await self._call(lambda: self._record(job_id, self._user_prefix + user_id, outcome))

    async def _record(self, job_id: str, user_key: str, outcome: bytes) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._prefix + job_id, outcome, ex=self._ttl_s)
            pipe.sadd(user_key, job_id)
            pipe.expire(user_key, self._ttl_s)
            await pipe.execute()

    async def forget_users(self, user_ids: list[str]) -> int:
        """Delete the outcomes recorded for these users' jobs (they were erased); how many."""
        return await self._call(lambda: self._forget([self._user_prefix + user_id for user_id in user_ids]))

    async def _forget(self, user_keys: list[str]) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_key in user_keys:
                pipe.smembers(user_key)
            job_sets: list[set[bytes]] = await pipe.execute()
        keys = [self._prefix + job_id.decode() for jobs in job_sets for job_id in jobs]
        if user_keys:
            await self._redis.delete(*keys, *user_keys)
        return len(keys)

    async def release(self, job_id: str) -> None:
        """Give up a claim after an attempt that certainly sent nothing, so a retry may claim again."""
        await self._call(lambda: self._redis.delete(self._prefix + job_id))

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._skip_until:
            metrics.DELIVERY_CLAIMS_UNAVAILABLE.inc()
            raise ClaimsUnavailable("Redis failed less than a second ago")
        try:
            result = await command()
        except (RedisError, OSError) as e:
            metrics.DELIVERY_CLAIMS_UNAVAILABLE.inc()
            if not self._skip_until:
                log.warning("cannot reach Redis for delivery claims (%s); going on with the deliveries topic alone", e)
            self._skip_until = time.monotonic() + RETRY_AFTER_S
            raise ClaimsUnavailable(f"cannot reach Redis for delivery claims: {e}") from e
        if self._skip_until:
            log.info("Redis answers again; delivery claims are made there too")
            self._skip_until = 0.0
        return result
