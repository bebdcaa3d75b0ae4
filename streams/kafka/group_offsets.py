"""The hot-path group's committed offsets, kept for lag monitoring and committed beside the hot path.

Where a partition resumes is the checkpoint in its changelog (`committer.py`), never the
group's offsets: they are there for the tools an SRE already has (kafka-consumer-groups,
lag exporters). Committing them is a round trip to the group coordinator, and a batch that
waited for it delayed the next fetch, so each partition's latest offset is committed by
one background task, one request at a time; a commit refused during a rebalance is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


class GroupOffsets:
    """Commits the latest offsets it was given, in the background."""

    def __init__(self, consumer: Callable[[], AIOKafkaConsumer]) -> None:
        self._consumer = consumer
        self._pending: dict[TopicPartition, int] = {}
        self._committing: asyncio.Task[None] | None = None

    def commit_soon(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._pending.update(offsets)
        if self._committing is None or self._committing.done():
            self._committing = asyncio.get_running_loop().create_task(self._commit_pending())

    async def flush(self) -> None:
        """Wait until every offset given so far is committed (or its commit failed)."""
        if self._committing is not None:
            await asyncio.shield(self._committing)

    async def _commit_pending(self) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            try:
                await self._consumer().commit(offsets)
            except Exception as error:  # monitoring only: the next batch's commit supersedes this one
                log.info("the hot path group's offsets were not committed (%r); the next batch commits them", error)
