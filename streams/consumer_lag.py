"""Consumer lag per partition, for the worker's events and the deliverer's jobs: the broker's
end offset minus the consumer's position, asked of the broker every few seconds.

The high watermark a fetch last saw is no substitute: it stops moving when a consumer is
paused (the deliverer above its pending cap) or stuck (the worker retrying a batch), which
is exactly when lag matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer

from streams import metrics

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 2.0


class ConsumerLag:
    """The lag of one consumer's partitions of one topic, exported as
    `tidemail_consumer_lag_records{topic,partition}` for the partitions it holds now."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.by_partition: dict[int, int] = {}
        # time.monotonic() of the last measurement that reached the broker.
        self.measured_at: float | None = None

    async def refresh(self, consumer: AIOKafkaConsumer, timeout_s: float = LAG_INTERVAL_S) -> None:
        """Measure again; on a failure (broker unreachable, consumer stopping) keep the last values."""
        try:
            lag = await asyncio.wait_for(self._measure(consumer), timeout_s)
        except Exception as e:  # any failure here must not stop the process it watches
            log.debug("could not measure consumer lag of %s: %r", self.topic, e)
            return
        self.export(lag)
        self.measured_at = time.monotonic()

    async def _measure(self, consumer: AIOKafkaConsumer) -> dict[int, int]:
        held = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        if not held:
            return {}
        ends = await consumer.end_offsets(held)
        lag = {}
        for tp in held:
            # Given up while the broker answered: its lag is another consumer's now.
            if tp in consumer.assignment():
                lag[tp.partition] = max(0, ends[tp] - await consumer.position(tp))
        return lag

    def export(self, lag: dict[int, int]) -> None:
        """Adopt `lag`, and drop the series of partitions no longer held (another process reports them)."""
        for partition in self.by_partition.keys() - lag.keys():
            metrics.CONSUMER_LAG.remove(self.topic, str(partition))
        for partition, records in lag.items():
            metrics.CONSUMER_LAG.labels(self.topic, str(partition)).set(records)
        self.by_partition = lag


async def follow_lag(lag: ConsumerLag, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    """Refresh `lag` every LAG_INTERVAL_S until `stop` is set."""
    while not stop.is_set():
        await lag.refresh(consumer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LAG_INTERVAL_S)
