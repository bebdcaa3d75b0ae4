"""Redis or Kafka down: wait and try again, sending nothing meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

from streams import metrics
from streams.delivery.claims import ClaimsUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

UNAVAILABLE_RETRY_S = 1.0


async def until_available(call: Callable[[], Awaitable[T]]) -> T:
    """Run `call()` until Redis or Kafka answers: a result must be recorded, never skipped."""
    while True:
        try:
            return await call()
        except (ClaimsUnavailable, KafkaError) as e:
            await unavailable(e)


async def unavailable(error: Exception) -> None:
    """Count and log the failure, then wait before the next try."""
    if isinstance(error, ClaimsUnavailable):
        metrics.DELIVERY_CLAIMS_UNAVAILABLE.inc()
    log.warning("%s; retrying in %.0f s, sending nothing meanwhile", error, UNAVAILABLE_RETRY_S)
    await asyncio.sleep(UNAVAILABLE_RETRY_S)
