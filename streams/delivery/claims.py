"""Delivery claims in Redis: the record that makes sending at most once per job id.

A key per job, `tidemail:<app id>:delivery:<job id>`, written with `SET NX` before the
first SMTP attempt (`claimed:<epoch ms>`) and overwritten with the job's outcome record
once the outcome is known. Whoever does not win the `SET NX` must not send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from streams.core.errors import TidemailError

CLAIMED = b"claimed:"


class ClaimsUnavailable(TidemailError):
    """Redis did not answer; nothing may be sent until it does."""


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
        self._redis = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._ttl_s = ttl_s

    async def claim(self, job_id: str, now_ms: int) -> Existing | None:
        """Claim the job: None if this call did, else what is already there."""
        key = self._prefix + job_id
        try:
            while True:
                if await self._redis.set(key, CLAIMED + str(now_ms).encode(), nx=True, ex=self._ttl_s):
                    return None
                value = await self._redis.get(key)
                # None: released (a retry pending elsewhere) or expired between the two calls.
                if isinstance(value, bytes):
                    return read_existing(value)
        except (RedisError, OSError) as e:
            raise ClaimsUnavailable(f"cannot reach Redis for delivery claims: {e}") from e

    async def record(self, job_id: str, outcome: bytes) -> None:
        """Replace the claim with the job's outcome record."""
        await self._call(self._redis.set(self._prefix + job_id, outcome, ex=self._ttl_s))

    async def release(self, job_id: str) -> None:
        """Give up a claim after an attempt that certainly sent nothing, so a retry may claim again."""
        await self._call(self._redis.delete(self._prefix + job_id))

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, command: Any) -> None:
        try:
            await command
        except (RedisError, OSError) as e:
            raise ClaimsUnavailable(f"cannot reach Redis for delivery claims: {e}") from e
