"""A long-tail shop: the traffic the shipped generator's flat world lacks, to measure
recommenders where shops live (`tidemail generate --world longtail`, `tidemail eval`).

2,000 products in 20 categories with Zipf-distributed popularity (exponent 1); users
mixing two or three tastes; complements of what a user buys bought in a later order;
a quarter of users who come once with one to three events; one user in ten whose
tastes change. Product tiles are clicked on listing pages, so a click comes before
the product's page view, as in shops' own tracking. Every message is in the event
contract, and every product is in `catalogue()` for the catalogue topic.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.tools.generator import BROKEN_MESSAGES, DEVICES, FIRST_NAMES, PLACES, shop_event, user_id
from models.interactions import Product

LONGTAIL_CATEGORIES = (
    "outdoor", "running", "kitchen", "books", "electronics", "garden", "toys", "fashion", "beauty", "pets",
    "music", "games", "office", "baby", "sports", "tools", "home", "jewelry", "health", "auto",
)  # fmt: skip
PER_CATEGORY = 100
ZIPF_EXPONENT = 1.0
# Where a category's complements come from: a tent's pegs, a phone's case.
COMPLEMENT_SHIFT = 10
LIGHT_SHARE = 0.15
DRIFT_SHARE = 0.10
# Sessions that are someone's first visit, while the user pool lasts.
FIRST_VISIT_SHARE = 0.3
# Visits per returning user are proportional to these tickets: most users come back
# now and then, a few often.
ACTIVITY_TICKETS = (1, 1, 1, 1, 2, 2, 3, 5, 8)
EVENT_SPACING_MS = 20_000


@dataclass(slots=True)
class _Shopper:
    user_id: str
    tastes: list[int]
    light: bool
    drift_at: int | None
    sessions: int = 0
    pending: list[Product] = field(default_factory=list)
    cart_id: str | None = None
    cart: dict[str, Product] = field(default_factory=dict)
    carts_opened: int = 0


class LongTailGenerator:
    """An endless, reproducible stream of (key, value) messages from up to `users` users."""

    def __init__(self, users: int, seed: int, broken_share: float = 0.002) -> None:
        self._rng = random.Random(seed)
        world = random.Random(seed * 7_919 + 1)
        self.products = _catalogue(world)
        ranks = list(range(1, len(self.products) + 1))
        world.shuffle(ranks)
        self._weight = {p.sku: 1.0 / rank**ZIPF_EXPONENT for p, rank in zip(self.products, ranks, strict=True)}
        self._by_category = [
            self.products[c * PER_CATEGORY : (c + 1) * PER_CATEGORY] for c in range(len(LONGTAIL_CATEGORIES))
        ]
        self._cumulative = [list(itertools.accumulate(self._weight[p.sku] for p in ps)) for ps in self._by_category]
        self._all_cumulative = list(itertools.accumulate(self._weight[p.sku] for p in self.products))
        self.complements = {
            p.sku: [self._popular_in((c + COMPLEMENT_SHIFT) % len(LONGTAIL_CATEGORIES), world) for _ in range(2)]
            for c, ps in enumerate(self._by_category)
            for p in ps
        }
        self._max_users = users
        self._shoppers: list[_Shopper] = []
        self._tickets: list[_Shopper] = []
        self._broken_share = broken_share
        self._sequence = 0

    def catalogue(self) -> list[tuple[str, dict[str, Any]]]:
        """Every product as a catalogue record: (sku, {name, category, price, available})."""
        return [
            (p.sku, {"name": p.name, "category": p.category, "price": p.price, "available": True})
            for p in self.products
        ]

    def messages(self, clock_ms: Any = None) -> Iterator[tuple[bytes, bytes]]:
        now = clock_ms or (lambda: int(time.time() * 1000))
        while True:
            if self._rng.random() < self._broken_share:
                yield b"u-broken", self._rng.choice(BROKEN_MESSAGES)
                continue
            shopper = self._next_shopper()
            for event in self._session(shopper, now()):
                yield shopper.user_id.encode(), orjson.dumps(event)

    def _next_shopper(self) -> _Shopper:
        rng = self._rng
        arriving = len(self._shoppers) < self._max_users and (not self._tickets or rng.random() < FIRST_VISIT_SHARE)
        if not arriving:
            return rng.choice(self._tickets)
        n = len(self._shoppers)
        tastes = rng.sample(range(len(LONGTAIL_CATEGORIES)), rng.choice((2, 2, 3)))
        light = rng.random() < LIGHT_SHARE
        drift_at = rng.randint(2, 8) if not light and rng.random() < DRIFT_SHARE else None
        shopper = _Shopper(user_id(n), tastes, light, drift_at)
        self._shoppers.append(shopper)
        if not light:
            self._tickets.extend([shopper] * rng.choice(ACTIVITY_TICKETS))
        return shopper

    def _session(self, shopper: _Shopper, start: int) -> Iterator[dict[str, Any]]:
        rng = self._rng
        clock = itertools.count(start, EVENT_SPACING_MS)
        shopper.sessions += 1
        if shopper.sessions == shopper.drift_at:
            shopper.tastes = rng.sample(range(len(LONGTAIL_CATEGORIES)), len(shopper.tastes))
        if shopper.light:
            yield from itertools.islice(self._browse(shopper, clock, views=3), rng.randint(1, 3))
            return
        if shopper.sessions == 1:
            yield self._event(shopper, "signup", next(clock), {"source": "web"}, self._context(shopper))
        if shopper.pending and rng.random() < 0.7:
            yield from self._buy_complement(shopper, clock)
        else:
            yield from self._browse(shopper, clock, views=1 + min(int(rng.expovariate(0.5)), 8))
        if shopper.cart and rng.random() < 0.6:
            yield self._purchase(shopper, next(clock))
        if rng.random() < 0.08:
            yield self._event(shopper, "email_open", next(clock), {"job_id": f"job-{rng.randrange(10**6)}"})

    def _browse(self, shopper: _Shopper, clock: Iterator[int], views: int) -> Iterator[dict[str, Any]]:
        rng = self._rng
        category = rng.choice(shopper.tastes)
        for _ in range(views):
            if rng.random() < 0.1:
                product = self.products[bisect.bisect(self._all_cumulative, rng.random() * self._all_cumulative[-1])]
            else:
                # Half the time the next product is from the category on screen.
                category = category if rng.random() < 0.5 else rng.choice(shopper.tastes)
                product = self._popular_in(category, rng)
            yield from self._visit(shopper, product, clock)
            if rng.random() < 0.12:
                yield self._add_to_cart(shopper, product, next(clock))

    def _buy_complement(self, shopper: _Shopper, clock: Iterator[int]) -> Iterator[dict[str, Any]]:
        product = shopper.pending.pop(0)
        yield from self._visit(shopper, product, clock)
        yield self._add_to_cart(shopper, product, next(clock))

    def _visit(self, shopper: _Shopper, product: Product, clock: Iterator[int]) -> Iterator[dict[str, Any]]:
        props = {"url": f"/p/{product.sku}", "category": product.category, "sku": product.sku}
        if self._rng.random() < 0.4:  # a tile on a listing page, then the product's page
            yield self._event(shopper, "click", next(clock), {**props, "url": f"/c/{product.category}"})
        yield self._event(shopper, "page_view", next(clock), props)

    def _popular_in(self, category: int, rng: random.Random) -> Product:
        cumulative = self._cumulative[category]
        return self._by_category[category][bisect.bisect(cumulative, rng.random() * cumulative[-1])]

    def _add_to_cart(self, shopper: _Shopper, product: Product, ts: int) -> dict[str, Any]:
        if shopper.cart_id is None:
            shopper.carts_opened += 1
            shopper.cart_id = f"c-{shopper.user_id}-{shopper.carts_opened}"
        shopper.cart[product.sku] = product
        props = {"cart_id": shopper.cart_id, "item": _item(product)}
        return self._event(shopper, "cart_add", ts, props)

    def _purchase(self, shopper: _Shopper, ts: int) -> dict[str, Any]:
        bought = list(shopper.cart.values())
        properties = {
            "order_id": f"o-{shopper.cart_id}",
            "cart_id": shopper.cart_id,
            "items": [_item(p) for p in bought],
            "total": round(sum(p.price for p in bought), 2),
            "currency": "EUR",
        }
        for product in bought:
            if self._rng.random() < 0.5:  # bought in a later order
                shopper.pending.append(self._rng.choice(self.complements[product.sku]))
        shopper.cart = {}
        shopper.cart_id = None
        return self._event(shopper, "purchase", ts, properties)

    def _context(self, shopper: _Shopper) -> dict[str, Any]:
        locale, timezone, country = self._rng.choice(PLACES)
        return {
            "locale": locale,
            "timezone": timezone,
            "country": country,
            "device": self._rng.choice(DEVICES),
            "email": f"{shopper.user_id}@example.com",
            "first_name": self._rng.choice(FIRST_NAMES),
        }

    def _event(
        self, shopper: _Shopper, event_type: str, ts: int, properties: dict[str, Any], context: Any = None
    ) -> dict[str, Any]:
        self._sequence += 1
        return shop_event(f"lt-{self._sequence:010d}", shopper.user_id, event_type, ts, properties, context)


def _catalogue(rng: random.Random) -> list[Product]:
    return [
        Product(
            f"{category[:3].upper()}-{n:03d}",
            f"{category.title()} item {n}",
            category,
            round(min(2_000.0, rng.lognormvariate(3.4, 0.8)), 2),
        )
        for category in LONGTAIL_CATEGORIES
        for n in range(PER_CATEGORY)
    ]


def _item(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "price": product.price,
        "quantity": 1,
    }
