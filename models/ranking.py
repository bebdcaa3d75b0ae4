"""How the worker ranks products for a user: a blend of what users touched after the
user's recent products, the popular products of the categories they were in, what buyers
of their purchases bought with or after them, and time-decayed popularity as the prior.

Each component's scores are made shares that sum to one, and the blend is their mixture:
a personal component weighs its weight times its evidence for this user (how recently and
how many of their products have known successors or categories, how many purchases have
rules), popularity its weight alone, so a user with one view gets mostly the prior and a
regular mostly themselves. `Blend` with one weight set is that component alone, which is
how the evaluation (`tidemail eval`) measures each.

A snapshot's `RankingIndex` holds each product's successors, each category's popular
products and each product's rules as arrays of positions and scores, so ranking a user is
one weighted count per component over the catalogue and one `argpartition`, whatever the
length of their history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.interactions import Product

if TYPE_CHECKING:
    from models.reco import History, ItemModel

# A product seen this few times has successors that are mostly chance: its counts are
# shrunk towards none by this many pseudo-touches.
SHRINK = 20.0
# Popular products kept per category for the category component.
PER_CATEGORY = 30
# Purchases whose rules count, latest first.
RULED_PURCHASES = 5


@dataclass(frozen=True, slots=True)
class Blend:
    """Weights of the components, and how fast a user's older products count less."""

    sequence: float = 1.0
    categories: float = 2.0
    rules: float = 1.0
    popularity: float = 1.0
    # Each step back in the user's history counts this much less than the one after it.
    recency: float = 0.9


DEFAULT_BLEND = Blend()
REASONS = ("sequence", "category", "rule", "popular")


@dataclass(frozen=True, slots=True)
class Postings:
    """Products, as positions in a `RankingIndex`, each with a score; and the scores' sum."""

    positions: np.ndarray
    scores: np.ndarray
    mass: float


class RankingIndex:
    """What a snapshot knows, laid out for ranking: every product it can name has a
    position; successors, categories and rules are postings over those positions."""

    def __init__(
        self,
        successors: Mapping[str, Sequence[tuple[str, float]]],
        counts: Mapping[str, float],
        popular: Sequence[tuple[str, float]],
        together: Mapping[str, Sequence[str]],
        products: Mapping[str, Product],
        unavailable: AbstractSet[str],
    ) -> None:
        names = itertools.chain(
            products,
            (sku for sku, _ in popular),
            (sku for followers in successors.values() for sku, _ in followers),
            (sku for others in together.values() for sku in others),
        )
        self.skus = list(dict.fromkeys(names))
        self.position = {sku: i for i, sku in enumerate(self.skus)}
        self.blocked = np.array([sku not in products or sku in unavailable for sku in self.skus], dtype=bool)
        self.successors = {
            sku: self._postings([(other, n / (counts.get(sku, 0.0) + SHRINK)) for other, n in followers])
            for sku, followers in successors.items()
        }
        total = sum(score for _, score in popular) or 1.0
        self.popularity = np.zeros(len(self.skus))
        for sku, score in popular:
            self.popularity[self.position[sku]] = score / total
        self.has_popularity = bool(popular)
        self.categories = self._categories(popular, products)
        self.rules = {
            sku: self._postings([(other, 1.0 / (rank + 1)) for rank, other in enumerate(others)])
            for sku, others in together.items()
        }

    def _postings(self, scored: Sequence[tuple[str, float]]) -> Postings:
        scores = np.array([score for _, score in scored], dtype=np.float64)
        positions = np.array([self.position[sku] for sku, _ in scored], dtype=np.intp)
        return Postings(positions, scores, float(scores.sum()))

    def _categories(self, popular: Sequence[tuple[str, float]], products: Mapping[str, Product]) -> dict[str, Postings]:
        grouped: dict[str, list[tuple[str, float]]] = {}
        totals: dict[str, float] = {}
        for sku, score in popular:
            product = products.get(sku)
            if product is None:
                continue
            top = grouped.setdefault(product.category, [])
            if len(top) < PER_CATEGORY:
                top.append((sku, score))
            totals[product.category] = totals.get(product.category, 0.0) + score
        return {
            category: self._postings([(sku, score / (totals[category] or 1.0)) for sku, score in top])
            for category, top in grouped.items()
        }


def rank(
    history: History, bought: Sequence[str], model: ItemModel, k: int, seen: AbstractSet[str], blend: Blend
) -> list[tuple[str, float, str]]:
    """The user's top `k` (sku, score, reason) by `blend`, none in `seen` or not offerable;
    fewer when fewer products have a score."""
    index = model.index
    parts = [
        (blend.sequence, *_sequence(history, index, blend.recency)),
        (blend.categories, *_categories(history, model, index, blend.recency)),
        (blend.rules, *_rules(bought, index)),
    ]
    weights = [weight * evidence if postings else 0.0 for weight, evidence, postings in parts]
    prior = blend.popularity if index.has_popularity else 0.0
    total = sum(weights) + prior
    if total <= 0 or not index.skus:
        return []
    n = len(index.skus)
    # (reason, scores over the catalogue) of each component this user has evidence for
    mixed = [(REASONS[-1], index.popularity * (prior / total))]
    for reason, weight, (_, _, postings) in zip(REASONS[: len(parts)], weights, parts, strict=True):
        if weight > 0:
            mixed.append((reason, _mixed(postings, weight / total, n)))
    scores = np.sum([component for _, component in mixed], axis=0)
    scores[index.blocked] = 0.0
    scores[[index.position[sku] for sku in seen if sku in index.position]] = 0.0
    count = min(k, int(np.count_nonzero(scores > 0)))
    if count == 0:
        return []
    top = np.argpartition(-scores, count - 1)[:count]
    top = top[np.argsort(-scores[top], kind="stable")]
    strongest = np.array([component[top] for _, component in mixed]).argmax(axis=0).tolist()
    return [(index.skus[i], float(scores[i]), mixed[r][0]) for i, r in zip(top.tolist(), strongest, strict=True)]


def _mixed(postings: list[tuple[Postings, float]], share: float, n: int) -> np.ndarray:
    """The component's scores over the catalogue, summing to `share`."""
    mass = sum(p.mass * factor for p, factor in postings)
    positions = np.concatenate([p.positions for p, _ in postings])
    weights = np.concatenate([p.scores * (factor * share / mass) for p, factor in postings])
    return np.bincount(positions, weights=weights, minlength=n)


def _sequence(history: History, index: RankingIndex, recency: float) -> tuple[float, list[tuple[Postings, float]]]:
    """What users touched after the user's recent products, the latest counting most; the
    evidence is the user's products with known successors, weighted as they are."""
    found: list[tuple[Postings, float]] = []
    step = 1.0
    for sku in reversed(history[::2]):
        postings = index.successors.get(sku)
        if postings is not None and postings.mass > 0:
            found.append((postings, step))
        step *= recency
    return sum(step for _, step in found), found


def _categories(
    history: History, model: ItemModel, index: RankingIndex, recency: float
) -> tuple[float, list[tuple[Postings, float]]]:
    """Popular products of the categories of the user's recent products, each category
    weighted by how recently and often the user was in it."""
    weights: dict[str, float] = {}
    step = 1.0
    for sku in reversed(history[::2]):
        product = model.products.get(sku)
        if product is not None:
            weights[product.category] = weights.get(product.category, 0.0) + step
        step *= recency
    found = [(index.categories[c], w) for c, w in weights.items() if c in index.categories]
    return sum(weights.values()), found


def _rules(bought: Sequence[str], index: RankingIndex) -> tuple[float, list[tuple[Postings, float]]]:
    """What buyers of the user's purchases bought with or after them, latest purchase first."""
    found = [
        (index.rules[sku], 1.0 / (recency + 1))
        for recency, sku in enumerate(reversed(bought[-RULED_PURCHASES:]))
        if sku in index.rules
    ]
    return float(len(found)), found


def popular_top(model: ItemModel, k: int, exclude: AbstractSet[str]) -> list[str]:
    """The baseline of popularity: the `k` most popular offerable products not in `exclude`."""
    return first_offerable(model.popular, model, exclude, k)


def item_to_item_top(history: History, model: ItemModel, k: int, exclude: AbstractSet[str]) -> list[str]:
    """The item-to-item baseline: the products users most often touched next after the
    user's last product, then popular ones; none in `exclude`."""
    following = model.next_after.get(history[-2], []) if history else []
    return first_offerable(itertools.chain(following, model.popular), model, exclude, k)


def first_offerable(skus: Iterable[str], model: ItemModel, exclude: AbstractSet[str], k: int) -> list[str]:
    """The first `k` distinct offerable products of `skus` not in `exclude`."""
    picked: list[str] = []
    for sku in skus:
        if sku not in exclude and sku not in picked and model.offerable(sku):
            picked.append(sku)
            if len(picked) == k:
                break
    return picked
