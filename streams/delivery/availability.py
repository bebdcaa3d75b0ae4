"""Kafka down: wait and try again, sending nothing meanwhile (a claim that cannot be
published must not be acted on; an outcome that cannot be published is not dropped)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

T = TypeVar("T")

UNAVAILABLE_RETRY_S = 1.0


async def until_available(call: Callable[[], Awaitable[T]]) -> T:
    """Run `call()` until Kafka answers: a result must be recorded, never skipped."""
    while True:
        try:
            return await call()
        except KafkaError as e:
            await _wait(e)


async def until_available_unless(call: Callable[[], Awaitable[T]], give_up: Callable[[], bool]) -> T | None:
    """Run `call()` until Kafka answers, or return None once `give_up()` is true."""
    while not give_up():
        try:
            return await call()
        except KafkaError as e:
            await _wait(e)
    return None


async def _wait(error: KafkaError) -> None:
    log.warning("%r; retrying in %.0f s, sending nothing meanwhile", error, UNAVAILABLE_RETRY_S)
    await asyncio.sleep(UNAVAILABLE_RETRY_S)
