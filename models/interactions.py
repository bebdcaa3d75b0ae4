"""What the recommender learns from: a user's interaction with a product, weighted by
how much it says about taste, and the product's details when the event gave them.

Products are learned from the items in `cart_add` and `purchase` events (sku, name,
category, price); views and clicks name a sku alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price: float


@dataclass(frozen=True, slots=True)
class Interaction:
    user_id: str
    sku: str
    weight: float
    timestamp_ms: int
    order_id: str | None = None


# An interaction, with the product's details when its event described them.
InteractionExample = tuple[Interaction, Product | None]


def implicit_target(weight: float) -> float:
    """What the factor model fits for an interaction of this weight."""
    # Weights span 1 (a view) to 8 (a purchase); log keeps a purchase from drowning the rest.
    return math.log1p(weight)
