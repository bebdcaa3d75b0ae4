"""Reading the deliveries topic back into the ledger when the deliverer is given partitions
(at start and on every hand-off), before it takes any job from them."""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams import metrics
from streams.delivery.config import DeliveryConfig
from streams.delivery.ledger import CLOCK_SKEW_MS, Ledger, read_record

log = logging.getLogger(__name__)

FETCH_RECORDS = 10_000


def ledger_consumer(config: DeliveryConfig) -> AIOKafkaConsumer:
    """A consumer of no group: it reads chosen partitions from chosen instants, commits nothing."""
    return AIOKafkaConsumer(bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False)


class LedgerReader:
    """Folds the deliveries topic into the ledger, partition by partition, from an anchor."""

    def __init__(self, config: DeliveryConfig, consumer: AIOKafkaConsumer, ledger: Ledger) -> None:
        self._topic = config.deliveries_topic
        self._consumer = consumer
        self._ledger = ledger

    async def rebuild(self, anchors: dict[int, int]) -> None:
        """Load each partition's records from `anchors[partition]` (the Kafka timestamp of the
        first job the deliverer will read from it) less `CLOCK_SKEW_MS`, up to the end.

        Only a job at or after the committed position can be read again, and its claim was
        published after the job was, so nothing older can matter."""
        started = time.monotonic()
        generations = {p: self._ledger.generation(p) for p in anchors}
        tps = {p: TopicPartition(self._topic, p) for p in anchors}
        self._consumer.assign(list(tps.values()))
        starts = await self._consumer.offsets_for_times({tps[p]: max(0, t - CLOCK_SKEW_MS) for p, t in anchors.items()})
        ends = await self._consumer.end_offsets(list(tps.values()))
        ranges = {tp: (found.offset, ends[tp]) for tp, found in starts.items() if found and found.offset < ends[tp]}
        records = await self._read(ranges)
        for p, tp in tps.items():
            self._ledger.load(p, generations[p], records.get(tp, []))
        read = sum(len(found) for found in records.values())
        skipped = sum(end - start for start, end in ranges.values()) - read
        elapsed = time.monotonic() - started
        metrics.DELIVERY_LEDGER_RECORDS_READ.inc(read)
        metrics.DELIVERY_LEDGER_REBUILD_SECONDS.observe(elapsed)
        log.info(
            "rebuilt partitions %s from %s: %d records in %.2f s%s",
            sorted(anchors),
            self._topic,
            read,
            elapsed,
            f" ({skipped} offsets held no delivery record)" if skipped else "",
        )

    async def _read(
        self, ranges: dict[TopicPartition, tuple[int, int]]
    ) -> dict[TopicPartition, list[tuple[str, str, int]]]:
        records: dict[TopicPartition, list[tuple[str, str, int]]] = {tp: [] for tp in ranges}
        for tp, (start, _) in ranges.items():
            self._consumer.seek(tp, start)
        remaining = {tp: end for tp, (_, end) in ranges.items()}
        while remaining:
            fetched = await self._consumer.getmany(*remaining, timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, batch in fetched.items():
                records[tp].extend(_entries(batch, remaining[tp]))
            for tp in list(remaining):
                # Positions, not the last offset read: transaction markers and compaction leave gaps.
                if await self._consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
        return records


def _entries(batch: list[ConsumerRecord[bytes, bytes]], end: int) -> list[tuple[str, str, int]]:
    entries = []
    for record in batch:
        if record.offset >= end:
            break
        found = read_record(record.value)
        if found is not None:
            entries.append((found[0], found[1], record.timestamp))
    return entries
