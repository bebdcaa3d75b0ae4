"""How many members each segment has in the partitions this worker owns.

Each partition's sizes are stored beside its user states (and go to the changelog with
them), so a new owner of the partition starts from the sizes as of its checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import orjson

from streams import metrics
from streams.kafka.store import SEGMENT_SIZES_KEY, UserStore

# Users who entered and exited each segment, by (partition, "entered" | "exited").
SegmentMoves = Mapping[tuple[int, str], Counter[str]]


def encode_sizes(sizes: Counter[str]) -> bytes:
    return orjson.dumps(dict(sizes))


class SegmentSizes:
    """Members of each segment per owned partition, as of the last durable batch."""

    def __init__(self) -> None:
        self._by_partition: dict[int, Counter[str]] = {}

    def load(self, store: UserStore, partitions: Iterable[int]) -> None:
        """Take over `partitions` with the sizes stored for them (and no others)."""
        self._by_partition = {partition: self._stored(store, partition) for partition in partitions}
        self._export()

    def clear(self) -> None:
        self._by_partition = {}
        self._export()

    def after(self, moves: SegmentMoves) -> dict[int, Counter[str]]:
        """The sizes of each partition that `moves` touch, once they are applied."""
        deltas: dict[int, Counter[str]] = {}
        for (partition, change), counts in moves.items():
            delta = deltas.setdefault(partition, Counter())
            if change == "entered":
                delta.update(counts)
            else:
                delta.subtract(counts)
        sizes: dict[int, Counter[str]] = {}
        for partition, delta in deltas.items():
            sizes[partition] = Counter(self._by_partition.get(partition, Counter()))
            sizes[partition].update(delta)
        return sizes

    def update(self, sizes: Mapping[int, Counter[str]]) -> None:
        """Adopt the sizes of a batch that is now durable."""
        if sizes:
            self._by_partition.update(sizes)
            self._export()

    def totals(self) -> Counter[str]:
        """Members of each segment across the partitions this worker owns."""
        totals: Counter[str] = Counter()
        for sizes in self._by_partition.values():
            totals.update(sizes)
        return totals

    def by_partition(self) -> dict[int, dict[str, int]]:
        """Members of each segment in each partition this worker owns."""
        return {partition: dict(sizes) for partition, sizes in self._by_partition.items()}

    def _export(self) -> None:
        for name, size in self.totals().items():
            metrics.SEGMENT_SIZE.labels(name).set(size)

    @staticmethod
    def _stored(store: UserStore, partition: int) -> Counter[str]:
        raw = store.get(partition, SEGMENT_SIZES_KEY)
        return Counter(orjson.loads(raw)) if raw else Counter()
