"""One block cache and one memtable budget for every RocksDB database a worker opens.

Faust's RocksDB store opens a database per partition of the `users` table a worker holds
or has held (it does not close those it gives up), and `RocksDBOptions.as_options` gives
each a block cache of its own and memtables of its own: with 8 partitions a worker's
RocksDB memory could reach 8 times the configured cache. `SharedMemoryStore` is that store with one
`rocksdict.Cache` and one `rocksdict.WriteBufferManager` per worker, and index and
filter blocks charged to the cache, so the bound is the sum of the two settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import rocksdict
from faust.stores import STORES
from faust.stores.rocksdb import RocksDBOptions, Store
from faust.types import EventT

log = logging.getLogger(__name__)

STORE_SCHEME: Final = "tidemail-rocksdb"


@dataclass(frozen=True, slots=True)
class RocksMemoryBudget:
    """What every RocksDB database of one worker shares: bytes of block cache and of memtables."""

    block_cache_bytes: int
    memtable_bytes: int


class _SharedMemory:
    def __init__(self, budget: RocksMemoryBudget) -> None:
        self.budget = budget
        self.cache = rocksdict.Cache(budget.block_cache_bytes)
        # Writers stall rather than overshoot: flushes free memtables within milliseconds.
        self.write_buffers = rocksdict.WriteBufferManager(budget.memtable_bytes, True)


_shared: dict[RocksMemoryBudget, _SharedMemory] = {}


def shared_memory(budget: RocksMemoryBudget) -> _SharedMemory:
    """The one cache and memtable manager of this process for `budget`."""
    if budget not in _shared:
        _shared[budget] = _SharedMemory(budget)
    return _shared[budget]


class SharedMemoryOptions(RocksDBOptions):
    """Faust's options, with the block cache and memtable budget shared by every database."""

    def __init__(self, memory: _SharedMemory, **options: Any) -> None:
        super().__init__(**options)
        self._memory = memory

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(-1 if self.max_open_files is None else self.max_open_files)  # -1: no limit
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_write_buffer_manager(self._memory.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(self._memory.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class SharedMemoryStore(Store):
    """Faust's RocksDB store (rocksdict driver) opening its databases with `SharedMemoryOptions`.

    Its table options carry the budget: `block_cache_size` and `memtable_budget_size`.

    The partitions the hot path owns (`hot_path_partitions`, set by `UserStore.hold`) are
    written by it alone, each change with the changelog offset it reflects. Faust applies a
    changelog record (a recovery's) only to the others: one read for an owned
    partition is one the hot path wrote or superseded, and applying it late would put an
    older state, and an older persisted offset, under the newer one."""

    hot_path_partitions: frozenset[int] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = dict(self.options or {})
        budget = RocksMemoryBudget(options.pop("block_cache_size"), options.pop("memtable_budget_size"))
        self.rocksdb_options = SharedMemoryOptions(shared_memory(budget), **options, use_rocksdict=True)

    def apply_changelog_batch(
        self, batch: Iterable[EventT[Any]], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        held = self.hot_path_partitions
        if held:  # a recovery's restore runs with nothing held: its records go through as they are
            events = list(batch)
            batch = [event for event in events if event.message.partition not in held]
            if len(batch) < len(events):
                skipped = sorted({event.message.partition for event in events} & held)
                log.warning(
                    "skipped %d changelog records of partitions %s that the hot path owns and writes itself",
                    len(events) - len(batch),
                    skipped,
                )
        super().apply_changelog_batch(batch, to_key, to_value)


def register() -> None:
    """Make `tidemail-rocksdb:<table>` a store URL Faust resolves, as a `faust.stores` plug-in would."""
    STORES.aliases[STORE_SCHEME] = f"{__name__}:SharedMemoryStore"
