"""Batch access to the `users` Faust table's RocksDB partitions and changelog.

Faust's table API finds the partition of a write from the event being iterated,
which the batch hot path does not have. This adapter writes each partition's
changes as one RocksDB WriteBatch and records the changelog offset they reflect,
exactly as Faust's own changelog recovery does (`Store.apply_changelog_batch`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from faust.types import TP
from rocksdict import WriteBatch

from streams.core.erasure import marker_id
from streams.core.partitioning import partition_of

CHECKPOINT_KEY: Final = b"\x00tidemail:checkpoint"
SEGMENT_SIZES_KEY: Final = b"\x00tidemail:segment-sizes"
ERASURE_PREFIX: Final = b"\x00tidemail:erased:"
TIMER_PREFIX: Final = b"\x01due:"


def timer_key(due_ms: int, user_id: str) -> bytes:
    """Index key ordered by due time, so a scan from the prefix meets the earliest first."""
    return TIMER_PREFIX + f"{due_ms:016d}:".encode() + user_id.encode()


def erasure_key(user_id: str) -> bytes:
    """An erased user's marker: a hash of the id, whose value is the erasure instant."""
    return ERASURE_PREFIX + marker_id(user_id).encode()


def is_user_key(key: bytes) -> bool:
    return not key.startswith((b"\x00", b"\x01", b"__faust"))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a partition's effects are durable: the last input offset applied, and for each
    output topic's same-numbered partition an offset no later than the end of its outputs
    (the end after the batch before), where a new owner's recall of published ids starts."""

    input_offset: int | None
    output_ends: dict[str, int]

    def encode(self) -> bytes:
        return orjson.dumps({"input": self.input_offset, "outputs": self.output_ends})

    @classmethod
    def decode(cls, raw: bytes) -> Checkpoint:
        doc = orjson.loads(raw)
        if isinstance(doc, int):  # written before outputs were tracked: a bare input offset
            return cls(doc, {})
        return cls(doc["input"], doc["outputs"])

    def advanced(self, input_offset: int | None, output_ends: dict[str, int]) -> Checkpoint:
        return Checkpoint(
            self.input_offset if input_offset is None else input_offset, {**self.output_ends, **output_ends}
        )


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
        return partition_of(key, self._partitions)

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db(partition).get(key)
        return value

    def checkpoint(self, partition: int) -> Checkpoint:
        raw = self.get(partition, CHECKPOINT_KEY)
        return Checkpoint.decode(raw) if raw is not None else Checkpoint(None, {})

    def due_timers(self, partition: int, upto_ms: int, limit: int) -> list[tuple[int, str]]:
        """Timer entries `(due_ms, user_id)` due at or before `upto_ms`, earliest first."""
        upper = TIMER_PREFIX + f"{upto_ms:016d};".encode()  # ';' sorts after ':'
        found: list[tuple[int, str]] = []
        iterator = self._db(partition).iter()
        iterator.seek(TIMER_PREFIX)
        while iterator.valid() and len(found) < limit:
            key: bytes = iterator.key()
            if key >= upper:
                break
            due = key[len(TIMER_PREFIX) : len(TIMER_PREFIX) + 16]
            found.append((int(due), key[len(TIMER_PREFIX) + 17 :].decode()))
            iterator.next()
        return found

    def erased_ms(self, partition: int, user_id: str) -> int | None:
        """When the user id was last erased, if it was."""
        raw = self.get(partition, erasure_key(user_id))
        return int(raw) if raw is not None else None

    def timers_of(self, partition: int, users: Collection[str]) -> list[tuple[int, str]]:
        """Every timer index entry of `users`: the whole index is read, so only erasures ask."""
        found: list[tuple[int, str]] = []
        iterator = self._db(partition).iter()
        iterator.seek(TIMER_PREFIX)
        while iterator.valid():
            key: bytes = iterator.key()
            if not key.startswith(TIMER_PREFIX):
                break
            user_id = key[len(TIMER_PREFIX) + 17 :].decode()
            if user_id in users:
                found.append((int(key[len(TIMER_PREFIX) : len(TIMER_PREFIX) + 16]), user_id))
            iterator.next()
        return found

    def sample_users(self, partition: int) -> Iterator[bytes]:
        """Stored user states of one partition, in key order (for samples, not for hot paths)."""
        iterator = self._db(partition).iter()
        iterator.seek_to_first()
        while iterator.valid():
            if is_user_key(iterator.key()):
                yield iterator.value()
            iterator.next()

    def hold(self, partitions: frozenset[int]) -> None:
        """From now on only the hot path writes `partitions`: Faust applies no changelog record to them."""
        self._table.data.hot_path_partitions = partitions

    def write(self, partition: int, items: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in items.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db(partition).write(batch)
        if changelog_offset is not None:
            self._table.data.set_persisted_offset(TP(self.changelog_topic, partition), changelog_offset)

    def _db(self, partition: int) -> Any:
        # Faust opens partition databases lazily with the table's options; reuse them.
        return self._table.data._db_for_partition(partition)
