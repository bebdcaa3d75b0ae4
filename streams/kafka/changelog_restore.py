"""Rebuilding a table partition from its changelog in bulk.

Faust's recovery hands every changelog record to an asyncio queue and a per-record loop,
about 10,000 records a second on this project's machine: a worker with no local state and
a million users' changelog (three million records before compaction) took five minutes
to be ready. That loop also loses records around a rebalance: records its consumer
fetched at the new position can be dropped from the queue (it is cleared when Faust
resumes its flow) while older ones still queued move the partition's read offset past
them, and the offset persisted with the next records then covers a hole. The chaos run
found such holes in a worker's databases (three runs of 675 to 4,045 offsets whose
records were missing under a persisted offset past them), and the users whose records fell in them
were processed from older states. `restore_partitions` reads every record a recovering
partition lacks with a consumer of its own, in order, in batches of megabytes, and
applies each batch to the table's store in one write through the store's own
`apply_changelog_batch`, which also records the partition's persisted offset. Faust's
recovery then starts from that offset and has nothing left to read.

Work stops at a deadline: Faust gives each recovery step a time limit and stops the
whole recovery when one is exceeded. What was written stays, with its offset, so Faust
reads whatever remains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, CollectionT

READ_COMMITTED = "read_committed"
FETCH_BYTES_PER_PARTITION = 8 * 1024 * 1024
FETCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    """A changelog record shaped as Faust's stores read one (`event.message.<field>`)."""

    tp: TP
    offset: int
    key: bytes
    value: bytes | None

    @property
    def message(self) -> ChangelogRecord:
        return self

    @property
    def partition(self) -> int:
        return self.tp.partition


@dataclass(frozen=True, slots=True)
class RestoreRange:
    """Records after `applied` up to and including `last` are to be applied to `table`."""

    table: CollectionT
    applied: int
    last: int

    @property
    def remaining(self) -> int:
        return self.last - self.applied


def behind(applied: int, last: int) -> bool:
    """Whether a partition whose store holds records up to `applied` lacks any up to `last`."""
    return last > applied


async def restore_partitions(
    bootstrap: list[str],
    ranges: Mapping[TP, RestoreRange],
    on_applied: Callable[[TP, int], None],
    deadline: float,
) -> None:
    """Apply each partition's committed changelog records in `ranges` to its table, reporting
    the offset of the last applied record after each write, until done or `deadline` (monotonic)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=READ_COMMITTED,
        max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION,
        fetch_max_bytes=FETCH_BYTES,
    )
    await consumer.start()
    try:
        pending = {TopicPartition(tp.topic, tp.partition): tp for tp in ranges}
        consumer.assign(list(pending))
        for kafka_tp, tp in pending.items():
            consumer.seek(kafka_tp, ranges[tp].applied + 1)
        while pending and time.monotonic() < deadline:
            fetched = await consumer.getmany(*pending, timeout_ms=500)
            for kafka_tp, records in fetched.items():
                tp = pending[kafka_tp]
                restore = ranges[tp]
                batch = [
                    ChangelogRecord(tp, record.offset, record.key, record.value)
                    for record in records
                    if record.offset <= restore.last
                ]
                if batch:
                    # Stores read an event's `message` only, which a ChangelogRecord is.
                    restore.table.apply_changelog_batch(batch)  # type: ignore[arg-type]
                    on_applied(tp, batch[-1].offset)
            for kafka_tp, tp in list(pending.items()):
                if await consumer.position(kafka_tp) > ranges[tp].last:
                    consumer.pause(kafka_tp)
                    del pending[kafka_tp]
    finally:
        await consumer.stop()
