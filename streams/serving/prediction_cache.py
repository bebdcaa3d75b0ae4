"""Redis in front of the prediction API: one hash per user, dropped when their state changes.

Each user's cached answers (recommendations for each `k`, predictions) live in one hash,
so the hot path invalidates all of a user's answers with one key per user, in one
`UNLINK` per batch. Redis is an accelerator, never a dependency: when it is down the
API computes from the tables and says so in `tidemail_prediction_cache_total`.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis
from redis.exceptions import RedisError

from streams import metrics

log = logging.getLogger(__name__)

# After a failure, stay away this long instead of paying a timeout on every request.
BACKOFF_S = 1.0


class PredictionCache:
    def __init__(self, url: str, ttl_s: int, namespace: str) -> None:
        # Namespaced by app id: deployments (and test runs) sharing a Redis never mix users.
        self._prefix = f"tidemail:{namespace}:predictions:"
        self._redis = redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
        self._ttl_s = ttl_s
        self._down_until = 0.0
        # Exported at 0 from the start, so a rate over it exists before the first failure.
        self._errors = metrics.REDIS_ERRORS.labels("prediction_cache")

    async def get(self, user_id: str, field: str) -> bytes | None:
        """The cached answer, or None on a miss or when Redis is unavailable (counted)."""
        if self._backing_off():
            metrics.PREDICTION_CACHE.labels("unavailable").inc()
            return None
        try:
            value = await self._redis.hget(self._prefix + user_id, field)
        except (RedisError, OSError) as e:
            self._failed(e)
            metrics.PREDICTION_CACHE.labels("unavailable").inc()
            return None
        metrics.PREDICTION_CACHE.labels("hit" if value is not None else "miss").inc()
        return value if isinstance(value, bytes) else None

    async def put(self, user_id: str, field: str, value: bytes) -> None:
        if self._backing_off():
            return
        key = self._prefix + user_id
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, value)
                pipe.expire(key, self._ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as e:
            self._failed(e)

    async def entries(self, user_id: str) -> dict[str, bytes] | None:
        """Every cached answer of the user by field (for an export), or None when Redis is unavailable."""
        try:
            found = await self._redis.hgetall(self._prefix + user_id)
        except (RedisError, OSError) as e:
            self._failed(e)
            return None
        # Without decode_responses, Redis answers bytes.
        return {_text(field): value for field, value in found.items() if isinstance(value, bytes)}

    async def forget(self, user_ids: list[str]) -> None:
        """Drop every cached answer of these users (their state just changed)."""
        if not user_ids:
            return
        try:
            await self._redis.unlink(*(self._prefix + user_id for user_id in user_ids))
        except (RedisError, OSError) as e:
            # Entries that could not be dropped expire with their TTL.
            self._failed(e)

    async def close(self) -> None:
        await self._redis.aclose()

    def _backing_off(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, error: Exception) -> None:
        self._errors.inc()
        if not self._backing_off():
            log.warning("prediction cache unavailable (%s); answering from the tables", error)
        self._down_until = time.monotonic() + BACKOFF_S


def _text(field: bytes | str) -> str:
    return field.decode() if isinstance(field, bytes) else field
