from __future__ import annotations

from pathlib import Path

from faust.types import TP

from app.faust_app import create_app
from app.settings import Settings
from streams.kafka.changelog_restore import ChangelogRecord
from streams.kafka.rocksdb_memory import RocksMemoryBudget, SharedMemoryOptions, shared_memory
from streams.kafka.store import UserStore

MIB = 1 << 20


def test_every_database_of_a_worker_fills_one_cache_and_one_memtable_budget(tmp_path: Path) -> None:
    memory = shared_memory(RocksMemoryBudget(block_cache_bytes=2 * MIB, memtable_bytes=8 * MIB))
    options = SharedMemoryOptions(memory, write_buffer_size=4 * MIB, use_rocksdict=True)
    databases = [options.open(tmp_path / f"users-{partition}.db") for partition in range(4)]
    value = bytes(range(256)) * 4
    for db in databases:
        for key in range(2_000):
            db[key.to_bytes(4, "big")] = value
    # Memtables of all four databases are counted by the one manager.
    assert 4 * 2_000 * len(value) > memory.write_buffers.get_usage() > 3 * 2_000 * len(value)
    for db in databases:
        db.flush()
    for db in databases:
        for key in range(2_000):
            assert db[key.to_bytes(4, "big")] == value
    # Four databases' blocks (8 MB read) in a 2 MiB cache: one shared cache, full, not four.
    assert MIB < memory.cache.get_usage() <= 2 * MIB
    for db in databases:
        db.close()


def test_one_budget_is_one_cache() -> None:
    budget = RocksMemoryBudget(block_cache_bytes=MIB, memtable_bytes=MIB)
    assert shared_memory(budget) is shared_memory(RocksMemoryBudget(MIB, MIB))


def test_faust_applies_no_changelog_record_to_a_partition_the_hot_path_holds(tmp_path: Path) -> None:
    app = create_app(Settings.from_env({"TIDEMAIL_DATA_DIR": str(tmp_path)}))
    table = app.tables["users"]
    store = UserStore(table, partitions=2)
    store.write(0, {b"ann": b"newer"}, changelog_offset=7)
    store.hold(frozenset({0}))
    changelog = store.changelog_topic
    late = [ChangelogRecord(TP(changelog, p), 5, key, b"older") for p, key in ((0, b"ann"), (1, b"bob"))]
    table.apply_changelog_batch(late)  # as Faust's standby reading or recovery would, late
    assert store.get(0, b"ann") == b"newer"
    assert table.data.persisted_offset(TP(changelog, 0)) == 7
    assert store.get(1, b"bob") == b"older"
    store.hold(frozenset())
    table.apply_changelog_batch(late)
    assert store.get(0, b"ann") == b"older"
