"""What a user costs at rest: the bytes of each user's record in the workers' RocksDB
partitions and in the `users` table's changelog topic, and the disk the RocksDB files take."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from streams.kafka.store import is_user_key

PARTITION_DB = re.compile(r"^users-(\d+)\.db$")


@dataclass(frozen=True, slots=True)
class Sizes:
    """Bytes per user (key and value of their latest record), and what the whole takes."""

    users: int
    per_user: list[int]
    total_bytes: int
    records: int


def partition_dbs(data_dirs: Iterable[Path]) -> dict[int, list[Path]]:
    """Every RocksDB directory of each partition of the `users` table, across workers (the
    current owner's, and older copies of workers that held it before)."""
    found: dict[int, list[Path]] = {}
    for data_dir in data_dirs:
        for path in sorted(data_dir.rglob("users-*.db")):
            match = PARTITION_DB.match(path.name)
            if match and path.is_dir():
                found.setdefault(int(match.group(1)), []).append(path)
    return found


def rocksdb_sizes(dbs: dict[int, list[Path]], progress: Callable[[int], None]) -> Sizes:
    """Every user record of every partition, read from stopped workers' files: of a
    partition's copies, the one holding the most users (an older copy may be behind)."""
    per_user: list[int] = []
    disk = 0
    for copies in dbs.values():
        measured = [_user_sizes(path) for path in copies]
        sizes, files = max(measured, key=lambda m: len(m[0]))
        per_user.extend(sizes)
        disk += files
        progress(len(sizes))
    return Sizes(len(per_user), per_user, disk, len(per_user))


def _user_sizes(path: Path) -> tuple[list[int], int]:
    """Key and value bytes of each user record in one database, and its files' bytes."""
    sizes = []
    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        for key, value in db.items():
            # Opened in raw mode: keys and values are bytes.
            if isinstance(key, bytes) and isinstance(value, bytes) and is_user_key(key):
                sizes.append(len(key) + len(value))
    finally:
        db.close()
    return sizes, sum(f.stat().st_size for f in path.iterdir() if f.is_file())


async def changelog_sizes(bootstrap: str, topic: str, partitions: int, progress: Callable[[int], None]) -> Sizes:
    """The latest record of each user in the changelog (what compaction keeps), and every
    record's bytes (what the topic holds before compaction)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        isolation_level="read_committed",
    )
    await consumer.start()
    latest: dict[bytes, int] = {}
    total = records = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=20_000)
            for batch_records in batch.values():
                for record in batch_records:
                    size = len(record.key or b"") + len(record.value or b"")
                    total += size
                    if record.key is not None and is_user_key(record.key):
                        # A tombstone (an erased user) leaves nothing behind.
                        latest[record.key] = size if record.value is not None else 0
                records += len(batch_records)
            # By position, not by the last record: a transactional partition ends in a marker.
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
            progress(sum(len(r) for r in batch.values()))
    finally:
        await consumer.stop()
    per_user = [size for size in latest.values() if size]
    return Sizes(len(per_user), per_user, total, records)
