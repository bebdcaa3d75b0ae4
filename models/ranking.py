"""How the worker ranks products for a user: a blend of what users touched after the
user's recent products, the popular products of the categories they were in, what buyers
of their purchases bought with or after them, and time-decayed popularity as the prior.

Each component's scores are made shares that sum to one, and the blend is their mixture:
a personal component weighs its weight times its evidence for this user (how recently and
how many of their products have known successors or categories, how many purchases have
rules), popularity its weight alone, so a user with one view gets mostly the prior and a
regular mostly themselves. `Blend` with one weight set is that component alone, which is
how the evaluation (`tidemail eval`) measures each.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.reco import History, ItemModel

# A product seen this few times has successors that are mostly chance: its counts are
# shrunk towards none by this many pseudo-touches.
SHRINK = 20.0


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


def blend_scores(
    history: History, bought: Sequence[str], model: ItemModel, n: int, blend: Blend = DEFAULT_BLEND
) -> dict[str, tuple[float, str]]:
    """Candidates (popular ones: the `n` most popular) with their blended score and the
    component that contributed most to it."""
    # (component, weight, scores, what the scores sum to over every product)
    parts: list[tuple[int, float, dict[str, float], float]] = []
    if blend.sequence > 0:
        found, evidence = sequence_scores(history, model, blend.recency)
        parts.append((0, blend.sequence * evidence, found, sum(found.values())))
    if blend.categories > 0:
        found, evidence = category_scores(history, model, blend.recency)
        parts.append((1, blend.categories * evidence, found, sum(found.values())))
    if blend.rules > 0:
        found, evidence = rule_scores(bought, model)
        parts.append((2, blend.rules * evidence, found, sum(found.values())))
    if blend.popularity > 0:
        parts.append((3, blend.popularity, popularity_scores(model, n), model.popularity_total))
    total = sum(weight for _, weight, _, mass in parts if mass > 0)
    scores: dict[str, list[float]] = {}
    for index, weight, found, mass in parts:
        if weight <= 0 or mass <= 0:
            continue
        share = weight / (total * mass)
        for sku, value in found.items():
            entry = scores.get(sku)
            if entry is None:
                entry = scores[sku] = [0.0] * (len(REASONS) + 1)
            entry[index] += share * value
            entry[-1] += share * value
    return {sku: (entry[-1], REASONS[max(range(len(REASONS)), key=entry.__getitem__)]) for sku, entry in scores.items()}


def sequence_scores(history: History, model: ItemModel, recency: float) -> tuple[dict[str, float], float]:
    """What users touched after the user's recent products, the latest counting most; and
    the evidence: the user's products with known successors, weighted as they are."""
    found: dict[str, float] = {}
    evidence = 0.0
    step = 1.0
    for sku in reversed(history[::2]):
        followers = model.successors.get(sku)
        if followers:
            evidence += step
            for other, share in followers:
                found[other] = found.get(other, 0.0) + step * share
        step *= recency
    return found, evidence


def category_scores(history: History, model: ItemModel, recency: float) -> tuple[dict[str, float], float]:
    """Popular products of the categories of the user's recent products, each category
    weighted by how recently and often the user was in it."""
    weights: dict[str, float] = {}
    step = 1.0
    evidence = 0.0
    for sku in reversed(history[::2]):
        product = model.products.get(sku)
        if product is not None:
            weights[product.category] = weights.get(product.category, 0.0) + step
            evidence += step
        step *= recency
    found: dict[str, float] = {}
    for category, weight in weights.items():
        popular, total = model.popular_by_category.get(category, ((), 0.0))
        for sku, score in popular:
            found[sku] = found.get(sku, 0.0) + weight * score / total
    return found, evidence


def rule_scores(bought: Sequence[str], model: ItemModel) -> tuple[dict[str, float], float]:
    """What buyers of the user's purchases bought with or after them, latest purchase first."""
    found: dict[str, float] = {}
    evidence = 0.0
    for recency, sku in enumerate(reversed(bought[-5:])):
        others = model.together.get(sku)
        if others:
            evidence += 1.0
            for rank, other in enumerate(others):
                found[other] = found.get(other, 0.0) + 1.0 / ((rank + 1) * (recency + 1))
    return found, evidence


def popularity_scores(model: ItemModel, n: int) -> dict[str, float]:
    """The `n` most popular products, scored by their decayed activity."""
    return dict(model.popular_scores[:n])


def follow_shares(
    successors: Mapping[str, Sequence[tuple[str, float]]], counts: Mapping[str, float], shrink: float = SHRINK
) -> dict[str, list[tuple[str, float]]]:
    """Per product, the share of its touches each successor followed, with the product's
    touches counted `shrink` higher (so a product seen twice does not promise much)."""
    return {
        sku: [(other, n / (counts.get(sku, 0.0) + shrink)) for other, n in followers]
        for sku, followers in successors.items()
    }


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
