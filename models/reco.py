"""Recommendations for a partitioned fleet: one trainer learns from all traffic
(`models.item_trainer`), and every worker ranks its own users against the latest snapshot
of what it knows, an `ItemModel`: what users touch after what and buy with or after what
(`models.transitions`), time-decayed popularity, and the catalogue of known products.

A user's part lives in the user's state: their last interactions (sku and weight). At
ranking time `models.ranking` blends the successors of those products, the popular
products of their categories, the rules of what they bought, and popularity, weighted by
how much evidence each has for this user.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.base import Ranker, Record
from models.interactions import Interaction, Product
from models.propensity import Scorer
from models.ranking import DEFAULT_BLEND, Blend, blend_scores, follow_shares
from models.send_time import HOURS_PER_WEEK
from models.transitions import TransitionTables

# A user's recent interactions, flat: [sku, weight, sku, weight, ...]. Flat because a
# list per pair made every cached user state 20 containers bigger for the garbage
# collector to walk, which cost the hot path more than the pairs were worth.
History = list[Any]

HISTORY_KEPT = 20

DEFAULT_WEIGHTS = {"page_view": 1.0, "click": 2.0, "cart_add": 4.0, "purchase": 8.0}


@dataclass(frozen=True, slots=True)
class Recommendation:
    sku: str
    score: float
    reason: str  # "sequence", "rule", "model" or "popular"


@dataclass(slots=True)
class ItemModel(Record[dict[str, Any]], Ranker[History, Recommendation]):
    """What the trainer knows about items, as of an offset of the interactions topic."""

    popularity: list[tuple[str, float, int]]  # (sku, score, touched at), most popular first
    together: dict[str, list[str]]  # sku -> skus most often bought with or after it
    products: dict[str, Product]
    offset: int  # the next interactions offset not reflected here
    popular: list[str] = field(default_factory=list)
    # Opens and clicks per local hour of the week over all users: send time's prior.
    send_hours: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    # Engagement propensity per outcome, and its prequential quality at the trainer.
    propensity: dict[str, Scorer] = field(default_factory=dict)
    propensity_quality: dict[str, Any] = field(default_factory=dict)
    # Per experiment and variant: the Beta posterior (alpha, beta) and send and reward counts.
    bandits: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # Products the shop's catalogue says are not for sale now; never offered.
    unavailable: frozenset[str] = frozenset()
    # What users touched after what, and bought with or after what (`models.transitions`).
    transitions: TransitionTables = field(default_factory=TransitionTables)
    # Which snapshot this is: its offset on the item-model topic (set by the reader).
    version: int = -1
    # Derived from the above when built: each product's successors with the share of its
    # touches they followed, popular products with their scores (overall and per
    # category), and the item-to-item baseline's "touched next" products.
    successors: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    popular_scores: list[tuple[str, float]] = field(default_factory=list)
    popularity_total: float = 0.0
    popular_by_category: dict[str, tuple[list[tuple[str, float]], float]] = field(default_factory=dict)
    next_after: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.popular = [sku for sku, _, _ in self.popularity if sku not in self.unavailable]
        self.popular_scores = [(sku, score) for sku, score, _ in self.popularity if sku not in self.unavailable]
        self.popularity_total = sum(score for _, score in self.popular_scores)
        self.popular_by_category = _by_category(self.popular_scores, self.products)
        self.successors = follow_shares(self.transitions.successors, self.transitions.counts)
        self.next_after = {sku: [other for other, _ in nexts] for sku, nexts in self.transitions.next_after.items()}

    @classmethod
    def empty(cls) -> ItemModel:
        return cls([], {}, {}, 0)

    def export(self) -> dict[str, Any]:
        tables = self.transitions
        return {
            "popularity": self.popularity,
            "together": self.together,
            "products": {sku: [p.name, p.category, p.price] for sku, p in self.products.items()},
            "offset": self.offset,
            "send_hours": self.send_hours,
            "propensity": {target: scorer.export() for target, scorer in self.propensity.items()},
            "propensity_quality": self.propensity_quality,
            "bandits": self.bandits,
            "unavailable": sorted(self.unavailable),
            "transitions": {
                "successors": tables.successors,
                "counts": tables.counts,
                "next_after": tables.next_after,
                "together": tables.together,
                "as_of_ms": tables.as_of_ms,
            },
        }

    @classmethod
    def restore(cls, state: dict[str, Any], /) -> ItemModel:
        if not isinstance(state, dict):
            raise TypeError(f"an item-model snapshot must be a JSON object; got {type(state).__name__}")
        # Snapshots of releases before transitions were learned have none (and item
        # factors, which nothing reads any more).
        tables = state.get("transitions")
        return cls(
            [(sku, float(score), int(touched)) for sku, score, touched in state["popularity"]],
            state["together"],
            {
                sku: Product(sku, name, category, float(price))
                for sku, (name, category, price) in state["products"].items()
            },
            int(state["offset"]),
            send_hours=[float(c) for c in state["send_hours"]],
            propensity={target: Scorer.restore(d) for target, d in state["propensity"].items()},
            propensity_quality=state["propensity_quality"],
            bandits=state["bandits"],
            unavailable=frozenset(state["unavailable"]),
            transitions=_tables(tables) if tables else TransitionTables(),
        )

    def to_bytes(self) -> bytes:
        return zlib.compress(orjson.dumps(self.export()), 6)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ItemModel:
        return cls.restore(orjson.loads(zlib.decompress(raw)))

    @property
    def items(self) -> int:
        """How many products have activity in this snapshot."""
        return len(self.transitions.counts)

    def offerable(self, sku: str) -> bool:
        """Described by some event or the catalogue, and not marked unavailable."""
        return sku in self.products and sku not in self.unavailable

    def predict_top(
        self,
        history: History,
        k: int,
        /,
        exclude: frozenset[str] = frozenset(),
        bought: list[str] | tuple[str, ...] = (),
        blend: Blend = DEFAULT_BLEND,
    ) -> list[Recommendation]:
        """Top `k` products new to a user: never one in their `history` or in `exclude`
        (their cart and recent orders, say), since an email earns its place with products
        the user has not found yet; ranked by `blend` (`models.ranking`) from their
        history and what they `bought`, then popular products."""
        seen = set(exclude)
        seen.update(history[::2])
        picked: list[Recommendation] = []
        # Stops as soon as `k` are found: the popular list alone can hold thousands.
        for sku, score, reason in self._candidates(history, k + len(seen), bought, blend):
            if sku not in seen and self.offerable(sku):
                seen.add(sku)
                picked.append(Recommendation(sku, round(score, 4), reason))
                if len(picked) == k:
                    break
        return picked

    def _candidates(
        self, history: History, n: int, bought: list[str] | tuple[str, ...], blend: Blend
    ) -> Iterator[tuple[str, float, str]]:
        scored = blend_scores(history, bought, self, n, blend)
        for sku, (score, reason) in sorted(scored.items(), key=lambda kv: -kv[1][0]):
            yield sku, score, reason
        for rank, sku in enumerate(self.popular):
            yield sku, 1.0 / (rank + 1), "popular"


def _by_category(
    popular: list[tuple[str, float]], products: dict[str, Product], kept: int = 30
) -> dict[str, tuple[list[tuple[str, float]], float]]:
    """Per category, its most popular products with their scores, and its total score."""
    grouped: dict[str, tuple[list[tuple[str, float]], float]] = {}
    for sku, score in popular:
        product = products.get(sku)
        if product is None:
            continue
        top, total = grouped.get(product.category, ([], 0.0))
        if len(top) < kept:
            top.append((sku, score))
        grouped[product.category] = (top, total + score)
    return grouped


def _tables(state: dict[str, Any]) -> TransitionTables:
    def pairs_of(table: dict[str, list[list[Any]]]) -> dict[str, list[tuple[str, float]]]:
        return {sku: [(other, float(n)) for other, n in others] for sku, others in table.items()}

    return TransitionTables(
        pairs_of(state["successors"]),
        {sku: float(n) for sku, n in state["counts"].items()},
        pairs_of(state["next_after"]),
        pairs_of(state["together"]),
        int(state["as_of_ms"]),
    )


def remember(history: History, interaction: Interaction, keep: int = HISTORY_KEPT) -> History:
    """The user's recent interactions with this one added (a new list)."""
    return [*history[max(0, len(history) - 2 * keep + 2) :], interaction.sku, interaction.weight]


def pairs(history: History) -> list[tuple[str, float]]:
    """The (sku, weight) pairs of a history, oldest first."""
    return list(zip(history[::2], history[1::2], strict=True))
