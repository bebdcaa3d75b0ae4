"""Batch access to the `users` Faust table's RocksDB partitions and changelog.

Faust's table API finds the partition of a write from the event being iterated,
which the batch hot path does not have. This adapter writes each partition's
changes as one RocksDB WriteBatch and records the changelog offset they reflect,
exactly as Faust's own changelog recovery does (`Store.apply_changelog_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiokafka.partitioner import murmur2
from faust.types import TP
from rocksdict import WriteBatch

CHECKPOINT_KEY: Final = b"\x00tidemail:checkpoint"


class UserStore:
    """The partitions of one RocksDB-backed Faust table, addressed by partition number."""

    def __init__(self, table: Any, partitions: int) -> None:
        self._table = table
        self._partitions = partitions

    @property
    def changelog_topic(self) -> str:
        name: str = self._table.changelog_topic.get_topic_name()
        return name

    def partition_for(self, key: bytes) -> int:
        """The partition Kafka's default partitioner gives `key` (murmur2, as the Java client)."""
        return int(murmur2(key) & 0x7FFFFFFF) % self._partitions

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db(partition).get(key)
        return value

    def checkpoint(self, partition: int) -> int | None:
        """The last input offset whose effects are durable in this partition, if any."""
        raw = self.get(partition, CHECKPOINT_KEY)
        return int(raw) if raw is not None else None

    def write(self, partition: int, items: Mapping[bytes, bytes], changelog_offset: int | None) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in items.items():
            batch.put(key, value)
        self._db(partition).write(batch)
        if changelog_offset is not None:
            self._table.data.set_persisted_offset(TP(self.changelog_topic, partition), changelog_offset)

    def _db(self, partition: int) -> Any:
        # Faust opens partition databases lazily with the table's options; reuse them.
        return self._table.data._db_for_partition(partition)
