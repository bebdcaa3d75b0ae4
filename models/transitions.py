"""What users touch after what: sequential item-to-item transitions across sessions and
orders, and what they buy with or after what they bought.

The session-based recommenders that hold their own against neural ones in published
comparisons (sequential rules, item-kNN, V-SKNN) count, for every product a user
touches, the products they touched before it, weighted by how many steps back. Here the
steps run across the user's sessions and orders alike (a complement bought a week
later is a step like any other), counts decay with a half-life so old habits fade, and
a product's count is kept beside so the ranking can discount what is popular anyway.

The trainer keeps each user's last few products for this (a bounded LRU of users: a
user it forgot starts a new sequence); the snapshot carries, per product, its strongest
successors with their counts, the plain "touched next" counts of the item-to-item
baseline, and "bought with or after".
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from models.base import Exportable, Learner
from models.interactions import InteractionExample

MILLIS_PER_DAY = 86_400_000
# How far back a new product looks for the products that led to it.
STEPS = 5
# Purchases a user's next purchase is paired with ("bought with or after").
PURCHASES_KEPT = 10
# Successors kept per product while learning, and shipped in a snapshot.
LEARNED_PER_ITEM = 60
SHIPPED_PER_ITEM = 30
NEXT_SHIPPED = 10
TOGETHER_SHIPPED = 10
# Counts are kept multiplied by 2^(t / half-life), so decay costs nothing per update;
# when that factor grows this large every count is rescaled once.
RESCALE_AT = 2.0**60


@dataclass(slots=True)
class TransitionTables:
    """A snapshot's share: per product, successors with their decayed counts; every
    product's own decayed count; the item-to-item baseline's plain "touched next" counts;
    "bought with or after" with its decayed counts; the instant counts are decayed to."""

    successors: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    next_after: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    together: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    as_of_ms: int = 0


class Transitions(Learner[InteractionExample], Exportable[TransitionTables]):
    """Learns successors, "touched next" and "bought with or after" from interactions in order.

    >>> from models.interactions import Interaction
    >>> t = Transitions(half_life_days=30)
    >>> for n, sku in enumerate(["TENT", "PEGS", "TENT", "PEGS"]):
    ...     t.learn_one((Interaction(f"u{n // 2}", sku, 1.0, n), None))
    >>> [sku for sku, _ in t.export().successors["TENT"]], t.export().next_after["TENT"]
    (['PEGS'], [('PEGS', 2.0)])
    """

    def __init__(self, half_life_days: float, users_kept: int = 500_000) -> None:
        self._half_life_ms = half_life_days * MILLIS_PER_DAY
        self._users_kept = users_kept
        self._origin_ms: int | None = None
        self._scale = 1.0
        self._latest_ms = 0
        self._recent: OrderedDict[str, list[str]] = OrderedDict()
        self._purchases: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
        self._successors: dict[str, dict[str, float]] = {}
        self._counts: dict[str, float] = {}
        self._next: dict[str, dict[str, float]] = {}
        self._together: dict[str, dict[str, float]] = {}

    def learn_one(self, example: InteractionExample, /) -> None:
        interaction, _ = example
        sku, user = interaction.sku, interaction.user_id
        weight = self._weight_at(interaction.timestamp_ms)
        self._counts[sku] = self._counts.get(sku, 0.0) + weight
        recent = self._recent.pop(user, None) or []
        if not recent or recent[-1] != sku:
            for steps_back, before in enumerate(reversed(recent)):
                if before != sku:
                    _add(self._successors, before, sku, weight / (steps_back + 1), LEARNED_PER_ITEM)
            if recent:
                _add(self._next, recent[-1], sku, 1.0, LEARNED_PER_ITEM)
            recent = [*recent[-STEPS + 1 :], sku]
        self._recent[user] = recent
        if len(self._recent) > self._users_kept:
            self._recent.popitem(last=False)
        if interaction.order_id is not None:
            self._learn_order(user, sku, interaction.order_id, weight)

    def export(self) -> TransitionTables:
        """The tables with decayed counts as of the latest interaction."""
        now = 1.0 / self._factor()
        return TransitionTables(
            {a: _top(followers, SHIPPED_PER_ITEM, now) for a, followers in self._successors.items()},
            {sku: _round(n * now) for sku, n in self._counts.items()},
            {a: _top(followers, NEXT_SHIPPED, 1.0) for a, followers in self._next.items()},
            {a: _top(others, TOGETHER_SHIPPED, now) for a, others in self._together.items()},
            self._latest_ms,
        )

    def restore(self, state: TransitionTables, /) -> None:
        """Continue from a snapshot's tables: the shipped successors and counts; the users'
        recent products are not in a snapshot, so sequences start afresh."""
        self._origin_ms = state.as_of_ms or None
        self._latest_ms = state.as_of_ms
        self._successors = {a: dict(followers) for a, followers in state.successors.items()}
        self._counts = dict(state.counts)
        self._next = {a: dict(followers) for a, followers in state.next_after.items()}
        self._together = {a: dict(others) for a, others in state.together.items()}

    def _learn_order(self, user: str, sku: str, order_id: str, weight: float) -> None:
        bought = self._purchases.pop(user, None) or []
        for before, order in bought:
            if before != sku:
                _add(self._together, before, sku, weight, LEARNED_PER_ITEM)
                if order == order_id:  # in one basket the order of items means nothing
                    _add(self._together, sku, before, weight, LEARNED_PER_ITEM)
        self._purchases[user] = [*bought[-PURCHASES_KEPT + 1 :], (sku, order_id)]
        if len(self._purchases) > self._users_kept:
            self._purchases.popitem(last=False)

    def _weight_at(self, at_ms: int) -> float:
        """1 at the origin, doubling every half-life: a count made now outweighs one made a
        half-life ago twice over, as if that one had halved."""
        if self._origin_ms is None:
            self._origin_ms = at_ms
        self._latest_ms = max(self._latest_ms, at_ms)
        weight = self._factor()
        if weight > RESCALE_AT:
            self._rescale(weight)
            return 1.0
        return weight

    def _factor(self) -> float:
        if self._origin_ms is None:
            return 1.0
        return math.pow(2.0, (self._latest_ms - self._origin_ms) / self._half_life_ms)

    def _rescale(self, factor: float) -> None:
        for table in (self._successors, self._together):
            for followers in table.values():
                for other in followers:
                    followers[other] /= factor
        for sku in self._counts:
            self._counts[sku] /= factor
        self._origin_ms = self._latest_ms


def _add(table: dict[str, dict[str, float]], a: str, b: str, weight: float, kept: int) -> None:
    followers = table.get(a)
    if followers is None:
        table[a] = {b: weight}
        return
    followers[b] = followers.get(b, 0.0) + weight
    if len(followers) > kept:
        # The weakest half goes at once, so pruning is rare rather than once per new pair.
        for other, _ in sorted(followers.items(), key=lambda kv: kv[1])[: kept // 2]:
            del followers[other]


def _top(followers: dict[str, float], n: int, scale: float) -> list[tuple[str, float]]:
    return [(sku, _round(count * scale)) for sku, count in sorted(followers.items(), key=lambda kv: -kv[1])[:n]]


def _round(value: float) -> float:
    return float(f"{value:.5g}")
