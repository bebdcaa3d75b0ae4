"""Rolling-window aggregates kept in bounded memory as time buckets in the user's state.

A window of length W uses buckets of the largest of 1m, 5m, 15m, 1h, 6h, 1d that is at
most W/24 (at least 1m), so no aggregate holds more than about 60 buckets. An event
counts from its timestamp until its bucket's end plus W: never less than W, at most
one bucket more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streams.core.events import NUMBERS, SCALARS, Event

# One aggregate's buckets, oldest first, flat: [start_ms, amount, start_ms, amount, ...].
# A flat list rather than a map: most aggregates hold one or two buckets, read newest first.
Buckets = list[float]
GRANULARITIES_MS = (60_000, 300_000, 900_000, 3_600_000, 21_600_000, 86_400_000)


def granularity_for(window_ms: int) -> int:
    fitting = [g for g in GRANULARITIES_MS if g <= window_ms // 24]
    return fitting[-1] if fitting else GRANULARITIES_MS[0]


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """What to accumulate (count, or sum of a numeric property) for which events, per bucket."""

    event_type: str
    where: tuple[tuple[str, Any], ...]
    field: str | None
    granularity_ms: int
    key: str = ""
    # The property paths of `where` and `field`, split once: they are read for every event.
    _filters: tuple[tuple[tuple[str, ...], Any], ...] = dataclasses.field(default=(), compare=False, repr=False)
    _field_path: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        # The state key is derived once: it is looked up for every event and evaluation.
        where = ",".join(f"{k}={v}" for k, v in self.where)
        measure = f"sum:{self.field}" if self.field else "count"
        object.__setattr__(self, "key", f"{measure}|{self.event_type}|{where}|{self.granularity_ms}")
        object.__setattr__(self, "_filters", tuple((tuple(k.split(".")), v) for k, v in self.where))
        object.__setattr__(self, "_field_path", tuple(self.field.split(".")) if self.field else ())

    def contribution(self, event: Event) -> float | None:
        """What `event` adds to this aggregate, or None when it does not match."""
        if event.type != self.event_type:
            return None
        for path, expected in self._filters:
            if value_at(event.properties, path) != expected:
                return None
        if self.field is None:
            return 1.0
        value = value_at(event.properties, self._field_path)
        return float(value) if isinstance(value, NUMBERS) and not isinstance(value, bool) else None


# An aggregate an event may add to, the horizon its buckets are kept for, and whether
# being found already settles that the event adds 1 (a count whose filters the lookup
# has matched), so that `contribution` need not look again.
Candidate = tuple[AggregateSpec, int, bool]


class AggregateIndex:
    """The aggregates an event may add to, found without trying every aggregate of its type.

    Aggregates filtered on a property are grouped by the value their first filter wants,
    so an event is matched against one group per filtered property rather than against
    each category (say) in turn; `contribution` still checks every other filter.
    """

    def __init__(self, horizons: dict[AggregateSpec, int]) -> None:
        unfiltered: dict[str, list[Candidate]] = {}
        by_value: dict[tuple[str, str], dict[Any, list[Candidate]]] = {}
        for spec, horizon in horizons.items():
            settled = spec.field is None and len(spec.where) <= 1
            if spec.where:
                name, expected = spec.where[0]
                group = by_value.setdefault((spec.event_type, name), {})
                group.setdefault(expected, []).append((spec, horizon, settled))
            else:
                unfiltered.setdefault(spec.event_type, []).append((spec, horizon, settled))
        self._unfiltered = {event_type: tuple(found) for event_type, found in unfiltered.items()}
        # Per event type: the filtered property (its name, and its path when nested) and
        # the aggregates by the value they want.
        self._filters: dict[str, list[tuple[str, tuple[str, ...] | None, dict[Any, tuple[Candidate, ...]]]]] = {}
        for (event_type, name), group in by_value.items():
            by_expected = {expected: tuple(found) for expected, found in group.items()}
            path = tuple(name.split(".")) if "." in name else None
            self._filters.setdefault(event_type, []).append((name, path, by_expected))

    def candidates(self, event: Event) -> tuple[Candidate, ...]:
        """Each aggregate `event` may contribute to."""
        found = self._unfiltered.get(event.type, ())
        for name, path, group in self._filters.get(event.type, ()):
            # Most filters name a top-level property (`category`): one lookup, no path walk.
            value = event.properties.get(name) if path is None else value_at(event.properties, path)
            if isinstance(value, SCALARS):  # only these can equal a filter value
                found += group.get(value, ())
        return found


def property_at(properties: dict[str, Any], path: str) -> Any:
    """`item.price` reads properties["item"]["price"]; a missing step gives None."""
    return value_at(properties, tuple(path.split(".")))


def value_at(properties: dict[str, Any], steps: tuple[str, ...]) -> Any:
    """`property_at` for a path already split into its steps."""
    value: Any = properties
    for step in steps:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def add(buckets: Buckets, spec: AggregateSpec, ts: int, amount: float, horizon_ms: int) -> Buckets:
    """New buckets with `amount` added at `ts`, without buckets older than the horizon."""
    start = ts - ts % spec.granularity_ms
    if not buckets:
        return [start, amount]
    newest = buckets[-2]
    if start == newest:
        # The newest bucket: no other bucket leaves. (Buckets past a horizon shortened by
        # new definitions wait for the next new bucket; they are older than any window
        # that now uses the aggregate, so they never count.)
        updated = buckets.copy()
        updated[-1] += amount
        return updated
    if start > newest:
        oldest_kept = start - spec.granularity_ms - horizon_ms
        first = 0
        while first < len(buckets) and buckets[first] <= oldest_kept:
            first += 2
        return [*buckets[first:], start, amount]
    if start <= newest - spec.granularity_ms - horizon_ms:
        return buckets  # a late event older than anything still kept
    updated = buckets.copy()
    position = len(updated) - 2
    while position >= 0 and updated[position] > start:
        position -= 2
    if position >= 0 and updated[position] == start:
        updated[position + 1] += amount
    else:
        updated[position + 2 : position + 2] = [start, amount]
    return updated


def total_and_next_expiry(buckets: Buckets, span_ms: int, now_ms: int) -> tuple[float, int | None]:
    """The sum of the buckets still inside the window at `now_ms`, and the next instant
    after it at which one of them leaves the window; `span_ms` is the window plus one
    bucket (a bucket counts until its start plus the span)."""
    amount = 0.0
    earliest: int | None = None
    position = len(buckets) - 2
    # Newest first: once one bucket has left the window, every older one has too.
    while position >= 0:
        end = int(buckets[position]) + span_ms
        if end <= now_ms:
            break
        amount += buckets[position + 1]
        earliest = end
        position -= 2
    return amount, earliest


def from_bucket_map(buckets: dict[str, float]) -> Buckets:
    """Buckets as earlier versions kept them in state: {start: amount}."""
    return [value for start in sorted(buckets, key=int) for value in (int(start), buckets[start])]
