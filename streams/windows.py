"""Rolling-window aggregates kept in bounded memory as time buckets in the user's state.

A window of length W uses buckets of the largest of 1m, 5m, 15m, 1h, 6h, 1d that is at
most W/24 (at least 1m), so no aggregate holds more than about 60 buckets. An event
counts from its timestamp until its bucket's end plus W: never less than W, at most
one bucket more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.events import Event

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

    def __post_init__(self) -> None:
        # The state key is derived once: it is looked up for every event and evaluation.
        where = ",".join(f"{k}={v}" for k, v in self.where)
        measure = f"sum:{self.field}" if self.field else "count"
        object.__setattr__(self, "key", f"{measure}|{self.event_type}|{where}|{self.granularity_ms}")

    def contribution(self, event: Event) -> float | None:
        """What `event` adds to this aggregate, or None when it does not match."""
        if event.type != self.event_type:
            return None
        for name, expected in self.where:
            if property_at(event.properties, name) != expected:
                return None
        if self.field is None:
            return 1.0
        value = property_at(event.properties, self.field)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class AggregateIndex:
    """The aggregates an event may add to, found without trying every aggregate of its type.

    Aggregates filtered on a property are grouped by the value their first filter wants,
    so an event is matched against one group per filtered property rather than against
    each category (say) in turn; `contribution` still checks every filter.
    """

    def __init__(self, horizons: dict[AggregateSpec, int]) -> None:
        self._unfiltered: dict[str, list[tuple[AggregateSpec, int]]] = {}
        self._by_value: dict[tuple[str, str], dict[Any, list[tuple[AggregateSpec, int]]]] = {}
        for spec, horizon in horizons.items():
            if spec.where:
                name, expected = spec.where[0]
                group = self._by_value.setdefault((spec.event_type, name), {})
                group.setdefault(expected, []).append((spec, horizon))
            else:
                self._unfiltered.setdefault(spec.event_type, []).append((spec, horizon))
        self._filters: dict[str, list[tuple[str, dict[Any, list[tuple[AggregateSpec, int]]]]]] = {}
        for (event_type, name), group in self._by_value.items():
            self._filters.setdefault(event_type, []).append((name, group))

    def candidates(self, event: Event) -> list[tuple[AggregateSpec, int]]:
        """Each aggregate `event` may contribute to, with the horizon its buckets are kept for."""
        found = list(self._unfiltered.get(event.type, ()))
        for name, group in self._filters.get(event.type, ()):
            value = property_at(event.properties, name)
            if isinstance(value, str | int | float | bool):  # only these can equal a filter value
                found.extend(group.get(value, ()))
        return found


def property_at(properties: dict[str, Any], path: str) -> Any:
    """`item.price` reads properties["item"]["price"]; a missing step gives None."""
    value: Any = properties
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def add(buckets: dict[str, float], spec: AggregateSpec, ts: int, amount: float, horizon_ms: int) -> dict[str, float]:
    """A new bucket map with `amount` added at `ts`, without buckets older than the horizon."""
    start = ts - ts % spec.granularity_ms
    updated = {**buckets, str(start): buckets.get(str(start), 0.0) + amount}
    newest = max(int(b) for b in updated)
    return {b: v for b, v in updated.items() if int(b) + spec.granularity_ms + horizon_ms > newest}


def total_and_next_expiry(
    buckets: dict[str, float], granularity_ms: int, window_ms: int, now_ms: int
) -> tuple[float, int | None]:
    """The sum of the buckets still inside the window at `now_ms`, and the next instant
    after it at which one of them leaves the window."""
    span = granularity_ms + window_ms
    amount = 0.0
    earliest: int | None = None
    for bucket, value in buckets.items():
        end = int(bucket) + span
        if end > now_ms:
            amount += value
            if earliest is None or end < earliest:
                earliest = end
    return amount, earliest
