"""Which worker answers a request about a user, and the fleet's segment sizes put together
from each worker's share.

A user's partition is the murmur2 partition of their id (`partitioning.partition_of`), the
same as their events'; the fleet's layout says which worker's URL owns each partition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FleetView:
    """This worker's URL and the owner of each partition, as of the last group assignment."""

    self_url: str
    owners: Mapping[int, str]
    # Members of the group, those owning nothing too.
    members: frozenset[str] = field(default_factory=frozenset)

    @property
    def urls(self) -> list[str]:
        """Every worker, this one first."""
        others = (set(self.members) | set(self.owners.values())) - {self.self_url}
        return [self.self_url, *sorted(others)]


def owners_of(distribution: Mapping[str, Mapping[str, list[int]]], topic: str) -> dict[int, str]:
    """Partition -> URL from a group layout giving each URL's partitions by topic (Faust's
    changelog distribution)."""
    return {partition: url for url, topics in distribution.items() for partition in topics.get(topic, ())}


@dataclass(frozen=True, slots=True)
class Local:
    """This worker owns the partition: answer here."""


@dataclass(frozen=True, slots=True)
class Forward:
    url: str


@dataclass(frozen=True, slots=True)
class Misdirected:
    """A forwarded request reached a worker that does not own the partition: it goes no further."""


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No other worker is known to own the partition: a rebalance is moving it (maybe here)."""


Decision = Local | Forward | Misdirected | Unavailable


def route(partition: int, owned: frozenset[int], fleet: FleetView, forwarded: bool) -> Decision:
    """Where a request about a user of `partition` is answered. A request forwarded once is
    never forwarded again, so two workers with different layouts cannot pass it back and forth."""
    if partition in owned:
        return Local()
    if forwarded:
        return Misdirected()
    owner = fleet.owners.get(partition)
    if owner is None or owner == fleet.self_url:
        return Unavailable()
    return Forward(owner)


@dataclass(frozen=True, slots=True)
class FleetSizes:
    totals: Counter[str]
    by_partition: dict[int, dict[str, int]]
    # Partitions no answering worker reported.
    missing: list[int]


def fleet_sizes(
    reports: Mapping[str, Mapping[int, Mapping[str, int]]], owners: Mapping[int, str], partitions: int
) -> FleetSizes:
    """Segment sizes over the fleet from each answering worker's sizes by partition, each
    partition counted once: from its owner in the layout when that worker reported it (in
    a rebalance the previous owner may still report it), otherwise from the first reporter."""
    by_partition: dict[int, dict[str, int]] = {}
    for partition in range(partitions):
        reporters = sorted(url for url, report in reports.items() if partition in report)
        if not reporters:
            continue
        owner = owners.get(partition)
        chosen = owner if owner in reporters else reporters[0]
        by_partition[partition] = dict(reports[chosen][partition])
    totals: Counter[str] = Counter()
    for sizes in by_partition.values():
        totals.update(sizes)
    return FleetSizes(totals, by_partition, [p for p in range(partitions) if p not in by_partition])
