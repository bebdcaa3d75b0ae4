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
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.base import Ranker, Record
from models.interactions import Interaction, Product
from models.propensity import Scorer
from models.ranking import DEFAULT_BLEND, Blend, RankingIndex, first_offerable, rank
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
    reason: str  # "sequence", "category", "rule" or "popular"


@dataclass(slots=True)
class ItemModel(Record[dict[str, Any]], Ranker[History, Recommendation]):
    """What the trainer knows about items, as of an offset of the interactions topic."""

    popularity: list[tuple[str, float, int]]  # (sku, score, touched at), most popular first
    together: dict[str, list[str]]  # sku -> skus most often bought with or after it
    products: dict[str, Product]
    offset: int  # the next interactions offset not reflected here
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
    # Derived from the above when built: the popular products' order, the item-to-item
    # baseline's "touched next" products, and everything laid out for ranking.
    popular: list[str] = field(default_factory=list)
    next_after: dict[str, list[str]] = field(default_factory=dict)
    index: RankingIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.popular = [sku for sku, _, _ in self.popularity if sku not in self.unavailable]
        self.next_after = {sku: [other for other, _ in nexts] for sku, nexts in self.transitions.next_after.items()}
        popular = [(sku, score) for sku, score, _ in self.popularity if sku not in self.unavailable]
        self.index = RankingIndex(
            self.transitions.successors,
            self.transitions.counts,
            popular,
            self.together,
            self.products,
            self.unavailable,
        )

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
        ranked = rank(history, bought, self, k, seen, blend)
        picked = [Recommendation(sku, round(score, 4), reason) for sku, score, reason in ranked]
        if len(picked) < k:
            seen.update(p.sku for p in picked)
            rest = first_offerable(self.popular, self, seen, k - len(picked))
            picked += [Recommendation(sku, 0.0, "popular") for sku in rest]
        return picked


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
