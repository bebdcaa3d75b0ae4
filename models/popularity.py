"""Time-decayed product popularity, and what the event stream tells about each product.

Emails need products to show before a recommender knows a user: the popular list is
that fallback. Products are learned from the items in `cart_add` and `purchase` events
(sku, name, category, price); views and clicks add to the score of products already
known, so a product nobody described is never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.interests import decayed


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price: float


class Popularity:
    """Keeps the `capacity` highest-scoring products; scores halve every `half_life_days`."""

    def __init__(self, half_life_days: float, capacity: int = 500) -> None:
        self._half_life_days = half_life_days
        self._capacity = capacity
        self._products: dict[str, Product] = {}
        # sku -> [score, touched_at_ms], decayed lazily like category interests.
        self._scores: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._products)

    def observe_product(self, product: Product, weight: float, ts: int) -> None:
        """Activity on a product whose details are known (from a cart or an order)."""
        if product.sku not in self._products:
            self._products[product.sku] = product
        self.bump(product.sku, weight, ts)

    def bump(self, sku: str, weight: float, ts: int) -> None:
        """Activity on a product by sku alone; ignored until its details are known."""
        if sku not in self._products:
            return
        score, touched = self._scores.get(sku, (0.0, ts))
        reference = max(int(touched), ts)
        self._scores[sku] = [decayed(score, int(touched), reference, self._half_life_days) + weight, reference]
        if len(self._scores) > self._capacity:
            self._evict(reference)

    def remember(self, product: Product) -> None:
        """Details of a product (from the catalogue), without activity to score."""
        self._products[product.sku] = product

    def products(self) -> dict[str, Product]:
        return dict(self._products)

    def export(self, now_ms: int) -> list[tuple[Product, float, int]]:
        """Every product with its score and the time the score was last touched, most
        popular at `now_ms` first."""
        ranked = sorted(self._scores, key=lambda sku: -self._score(sku, now_ms))
        return [(self._products[sku], self._scores[sku][0], int(self._scores[sku][1])) for sku in ranked]

    def load(self, entries: list[tuple[Product, float, int]]) -> None:
        for product, score, touched in entries:
            self._products[product.sku] = product
            self._scores[product.sku] = [score, touched]

    def top(
        self, n: int, now_ms: int, *, category: str | None = None, exclude: frozenset[str] = frozenset()
    ) -> list[Product]:
        """The `n` most popular known products, optionally of one category, without `exclude`."""
        ranked = sorted(
            (
                (self._score(sku, now_ms), sku)
                for sku in self._scores
                if sku not in exclude and (category is None or self._products[sku].category == category)
            ),
            reverse=True,
        )
        return [self._products[sku] for _, sku in ranked[:n]]

    def _score(self, sku: str, now_ms: int) -> float:
        score, touched = self._scores[sku]
        return decayed(score, int(touched), now_ms, self._half_life_days)

    def _evict(self, now_ms: int) -> None:
        # Drop the weakest tenth at once, so eviction is rare rather than once per new product.
        ranked = sorted(self._scores, key=lambda sku: self._score(sku, now_ms))
        for sku in ranked[: max(1, self._capacity // 10)]:
            del self._scores[sku]
            del self._products[sku]
