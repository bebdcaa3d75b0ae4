"""Time-decayed product popularity, and what the event stream tells about each product.

Emails need products to show before a recommender knows a user: the popular list is
that fallback. Products are learned from the interactions that describe them (cart
adds and orders); views and clicks add to the score of products already known, so a
product nobody described is never shown.
"""

from __future__ import annotations

from models.base import Exportable, Learner, Ranker
from models.interactions import InteractionExample, Product
from models.interests import decayed

# Every product with its score and the time the score was last touched.
PopularityEntries = list[tuple[Product, float, int]]


class Popularity(Learner[InteractionExample], Exportable[PopularityEntries], Ranker[int, Product]):
    """Keeps the `capacity` highest-scoring products; scores halve every `half_life_days`.

    >>> from models.interactions import Interaction, Product
    >>> popularity = Popularity(half_life_days=7)
    >>> popularity.learn_one((Interaction("u1", "TENT", 4.0, 0), Product("TENT", "Tent", "outdoor", 99.0)))
    >>> popularity.learn_one((Interaction("u2", "MUG", 8.0, 0), None))  # never described: not offered
    >>> [product.sku for product in popularity.predict_top(0, 5)]
    ['TENT']
    """

    def __init__(self, half_life_days: float, capacity: int = 500) -> None:
        self._half_life_days = half_life_days
        self._capacity = capacity
        self._products: dict[str, Product] = {}
        # sku -> [score, touched_at_ms], decayed lazily like category interests.
        self._scores: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._products)

    def learn_one(self, example: InteractionExample, /) -> None:
        """Activity on a product: its details become known if the interaction carries
        them; activity on a product whose details are unknown is ignored."""
        interaction, product = example
        if product is not None and product.sku not in self._products:
            self._products[product.sku] = product
        self._bump(interaction.sku, interaction.weight, interaction.timestamp_ms)

    def describe(self, product: Product) -> None:
        """Details of a product (from the catalogue), without activity to score."""
        self._products[product.sku] = product

    def products(self) -> dict[str, Product]:
        return dict(self._products)

    def export(self, now_ms: int = 0) -> PopularityEntries:
        """Every scored product with its score and the time the score was last touched,
        most popular at `now_ms` first (by score as last touched without it)."""
        ranked = sorted(self._scores, key=lambda sku: -self._score(sku, now_ms))
        return [(self._products[sku], self._scores[sku][0], int(self._scores[sku][1])) for sku in ranked]

    def restore(self, state: PopularityEntries, /) -> None:
        for product, score, touched in state:
            self._products[product.sku] = product
            self._scores[product.sku] = [score, touched]

    def predict_top(
        self, query: int, k: int, /, *, category: str | None = None, exclude: frozenset[str] = frozenset()
    ) -> list[Product]:
        """The `k` most popular known products at `query` (epoch ms), optionally of one
        category, without `exclude`."""
        ranked = sorted(
            (
                (self._score(sku, query), sku)
                for sku in self._scores
                if sku not in exclude and (category is None or self._products[sku].category == category)
            ),
            reverse=True,
        )
        return [self._products[sku] for _, sku in ranked[:k]]

    def _bump(self, sku: str, weight: float, ts: int) -> None:
        if sku not in self._products:
            return
        score, touched = self._scores.get(sku, (0.0, ts))
        reference = max(int(touched), ts)
        self._scores[sku] = [decayed(score, int(touched), reference, self._half_life_days) + weight, reference]
        if len(self._scores) > self._capacity:
            self._evict(reference)

    def _score(self, sku: str, now_ms: int) -> float:
        score, touched = self._scores[sku]
        return decayed(score, int(touched), now_ms, self._half_life_days)

    def _evict(self, now_ms: int) -> None:
        # Drop the weakest tenth at once, so eviction is rare rather than once per new product.
        ranked = sorted(self._scores, key=lambda sku: self._score(sku, now_ms))
        for sku in ranked[: max(1, self._capacity // 10)]:
            del self._scores[sku]
            del self._products[sku]
