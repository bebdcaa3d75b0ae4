from __future__ import annotations

from pathlib import Path

from streams.kafka.rocksdb_memory import RocksMemoryBudget, SharedMemoryOptions, shared_memory

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
