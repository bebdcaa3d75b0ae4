"""Stand-ins for the Kafka clients and the RocksDB store, for the shell's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import ProducerFenced

from streams.kafka.fencing import PartitionsFenced
from streams.kafka.store import CHECKPOINT_KEY, Checkpoint


class FakeBatch:
    def __init__(self, limit: int) -> None:
        self.records: list[dict[str, Any]] = []
        self._limit = limit
        self.closed = False

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes | None, headers: Any) -> object | None:
        if self.closed or len(self.records) >= self._limit:
            return None
        self.records.append({"key": key, "value": value, "headers": dict(headers)})
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Records sent batches; each topic-partition's offsets count up from zero."""

    def __init__(self, batch_limit: int = 100, unreachable: frozenset[str] = frozenset()) -> None:
        self.sent: list[tuple[str, int, FakeBatch]] = []
        self._limit = batch_limit
        self._next: dict[tuple[str, int], int] = {}
        # Topics whose sends fail, as they do while their leaders are away.
        self.unreachable = unreachable

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self._limit)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if topic in self.unreachable:
            raise ConnectionError(f"no leader for {topic}[{partition}]")
        # aiokafka holds an open batch for linger_ms, waiting for records that never come.
        assert batch.closed, "a batch sent open waits out the producer's linger_ms"
        self.sent.append((topic, partition, batch))
        base = self._next.get((topic, partition), 0)
        self._next[(topic, partition)] = base + len(batch.records)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(type("Metadata", (), {"offset": base})())
        return future


class FakeTransactionalProducer(FakeProducer):
    """A partition's producer: logs its transactions; fails to commit once fenced."""

    def __init__(self, log: list[str], partition: int, **options: Any) -> None:
        super().__init__(**options)
        self._log = log
        self._partition = partition
        self.fenced = False

    async def begin_transaction(self) -> None:
        self._log.append(f"begin {self._partition}")

    async def commit_transaction(self) -> None:
        if self.fenced:
            raise ProducerFenced()
        self._log.append(f"commit {self._partition}")

    async def abort_transaction(self) -> None:
        self._log.append(f"abort {self._partition}")


class FakeWriters:
    """The transactional producers of partitions 0-3, each with its own offsets."""

    def __init__(self, **options: Any) -> None:
        self.log: list[str] = []
        self.producers = {p: FakeTransactionalProducer(self.log, p, **options) for p in range(4)}
        self.dropped: list[int] = []

    def writer(self, partition: int) -> FakeTransactionalProducer:
        if partition in self.dropped:
            raise PartitionsFenced({partition})
        return self.producers[partition]

    async def abort(self, partition: int, error: BaseException) -> None:
        if isinstance(error, ProducerFenced):
            self.dropped.append(partition)
        else:
            await self.producers[partition].abort_transaction()


class FakeClients:
    """The worker's clients, started: a plain producer and one transactional producer per partition."""

    def __init__(self, producer: FakeProducer, writers: FakeWriters | None = None) -> None:
        self.producer = producer
        self.writers = writers or FakeWriters()


class FakeStore:
    """RocksDB partitions as dicts, with the changelog offset each write reflects."""

    changelog_topic = "users-changelog"

    def __init__(self, partitions: int = 4) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {p: {} for p in range(partitions)}
        self.persisted_offsets: dict[int, int] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def checkpoint(self, partition: int) -> Checkpoint:
        raw = self.get(partition, CHECKPOINT_KEY)
        return Checkpoint.decode(raw) if raw is not None else Checkpoint(None, {})

    def write(self, partition: int, items: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        for key, value in items.items():
            if value is None:
                self.data[partition].pop(key, None)
            else:
                self.data[partition][key] = value
        if changelog_offset is not None:
            self.persisted_offsets[partition] = changelog_offset
