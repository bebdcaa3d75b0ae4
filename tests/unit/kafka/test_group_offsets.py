from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from streams.kafka.group_offsets import GroupOffsets

P0, P1 = TopicPartition("events", 0), TopicPartition("events", 1)


class SlowCommits:
    """A consumer whose commits take a while, refusing those listed."""

    def __init__(self, refuse: int = 0) -> None:
        self.committed: list[dict[TopicPartition, int]] = []
        self._refuse = refuse

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(0.01)
        if self._refuse:
            self._refuse -= 1
            raise CommitFailedError("the group is rebalancing")
        self.committed.append(dict(offsets))


async def test_batches_do_not_wait_and_only_the_latest_offsets_go_out_one_request_at_a_time() -> None:
    consumer = SlowCommits()
    consumer_of: Any = lambda: consumer  # noqa: E731
    offsets = GroupOffsets(consumer_of)
    offsets.commit_soon({P0: 10})
    await asyncio.sleep(0)  # the first commit is under way
    offsets.commit_soon({P0: 20, P1: 5})
    offsets.commit_soon({P0: 30})
    assert consumer.committed == []
    await offsets.flush()
    assert consumer.committed == [{P0: 10}, {P0: 30, P1: 5}]


async def test_a_refused_commit_is_superseded_by_the_next_and_raises_nothing() -> None:
    consumer = SlowCommits(refuse=1)
    consumer_of: Any = lambda: consumer  # noqa: E731
    offsets = GroupOffsets(consumer_of)
    offsets.commit_soon({P0: 10})
    await offsets.flush()
    offsets.commit_soon({P0: 11})
    await offsets.flush()
    assert consumer.committed == [{P0: 11}]
