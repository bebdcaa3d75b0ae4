"""Consumer lag: end offsets minus positions for the partitions a consumer holds, exported per
partition, dropped when a partition goes, kept when the broker does not answer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from streams.consumer_lag import ConsumerLag, follow_lag


class FakeConsumer:
    def __init__(self, ends: dict[int, int], positions: dict[int, int], topic: str = "jobs") -> None:
        self.topic = topic
        self.ends = ends
        self.positions = positions
        self.fail = False

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in self.positions} | {TopicPartition("other", 0)}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.fail:
            raise ConnectionError("broker unreachable")
        assert all(tp.topic == self.topic for tp in tps)
        return {tp: self.ends[tp.partition] for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp.partition]


def exported(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("tidemail_consumer_lag_records", {"topic": topic, "partition": str(partition)})


async def test_lag_is_end_offset_minus_position_per_held_partition() -> None:
    consumer: Any = FakeConsumer(ends={0: 120, 1: 7}, positions={0: 100, 1: 7}, topic="lag-a")
    lag = ConsumerLag("lag-a")
    await lag.refresh(consumer)
    assert lag.by_partition == {0: 20, 1: 0} and lag.measured_at is not None
    assert (exported("lag-a", 0), exported("lag-a", 1)) == (20.0, 0.0)

    # Partition 1 went to another consumer, which reports it now; the broker then stops answering.
    del consumer.positions[1]
    consumer.ends[0] = 150
    await lag.refresh(consumer)
    assert (exported("lag-a", 0), exported("lag-a", 1)) == (50.0, None)
    consumer.fail = True
    measured_at = lag.measured_at
    await lag.refresh(consumer)
    assert lag.by_partition == {0: 50} and lag.measured_at == measured_at


async def test_following_stops_when_asked() -> None:
    consumer: Any = FakeConsumer(ends={3: 9}, positions={3: 4}, topic="lag-b")
    lag = ConsumerLag("lag-b")
    stop = asyncio.Event()
    task = asyncio.create_task(follow_lag(lag, consumer, stop))
    while lag.measured_at is None:
        await asyncio.sleep(0.01)
    assert lag.by_partition == {3: 5}
    stop.set()
    await asyncio.wait_for(task, 1)
