"""A seeded generator of realistic shop traffic, and a publisher that sends it to Kafka.

Users belong to planted taste groups (each prefers two categories), so models
and segments have real structure to find. A small share of messages is broken
on purpose, so the demo shows dead-lettering as well.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.settings import Settings
from app.tools.common import keep_pace
from models.interactions import Product

log = logging.getLogger(__name__)

CATEGORIES = ("outdoor", "running", "kitchen", "books", "electronics", "garden", "toys", "fashion")
TASTE_GROUPS = tuple((CATEGORIES[i], CATEGORIES[(i + 3) % len(CATEGORIES)]) for i in range(len(CATEGORIES)))
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Goran", "Hana", "Ivo", "Jules", "Keiko", "Lars")
PLACES = (
    ("en-GB", "Europe/London", "GB"),
    ("de-DE", "Europe/Berlin", "DE"),
    ("fr-FR", "Europe/Paris", "FR"),
    ("en-US", "America/New_York", "US"),
    ("ja-JP", "Asia/Tokyo", "JP"),
)
DEVICES = ("mobile", "desktop", "tablet")
BROKEN_MESSAGES = (
    b"{not json",
    b'{"event_id": "x", "type": "click"}',
    b'{"event_id": "x", "user_id": "u", "type": "teleport", "timestamp": 1795860000000}',
    b'{"event_id": "x", "user_id": "u", "type": "purchase", "timestamp": "yesterday", "properties": {}}',
)


@dataclass(slots=True)
class _User:
    user_id: str
    taste: tuple[str, str]
    signed_up: bool = False
    known: bool = False
    cart_id: str | None = None
    cart: dict[str, Product] = field(default_factory=dict)
    carts_opened: int = 0


def user_id(n: int) -> str:
    """The id of the generators' `n`-th user: every world of them names its users alike."""
    return f"u{n:06d}"


def user_hash(user: _User) -> int:
    return int(user.user_id[1:])


def catalog(per_category: int = 40, seed: int = 1) -> list[Product]:
    rng = random.Random(seed)
    return [
        Product(
            f"{category[:3].upper()}-{n:03d}", f"{category.title()} item {n}", category, round(rng.uniform(5, 250), 2)
        )
        for category in CATEGORIES
        for n in range(per_category)
    ]


class EventGenerator:
    """An endless, reproducible stream of (key, value) messages for `users` users."""

    def __init__(self, users: int, seed: int, broken_share: float = 0.002, returning_share: float = 0.9) -> None:
        self._rng = random.Random(seed)
        self._products = catalog()
        self._by_category = {c: [p for p in self._products if p.category == c] for c in CATEGORIES}
        # Most users already have an account; the rest sign up on their first visit.
        self._users = [
            _User(user_id(n), TASTE_GROUPS[n % len(TASTE_GROUPS)], signed_up=self._rng.random() < returning_share)
            for n in range(users)
        ]
        self._broken_share = broken_share
        self._sequence = 0

    def messages(self, clock_ms: Any = None) -> Iterator[tuple[bytes, bytes]]:
        now = clock_ms or (lambda: int(time.time() * 1000))
        while True:
            if self._rng.random() < self._broken_share:
                yield b"u-broken", self._rng.choice(BROKEN_MESSAGES)
                continue
            user = self._rng.choice(self._users)
            for event in self._session(user, now()):
                yield user.user_id.encode(), orjson.dumps(event)

    def _session(self, user: _User, ts: int) -> Iterator[dict[str, Any]]:
        rng = self._rng
        if not user.signed_up:
            user.signed_up = True
            yield self._event(
                user, "signup", ts, {"source": rng.choice(("web", "app", "referral"))}, self._context(user)
            )
        for _ in range(rng.randint(1, 4)):
            product = self._pick(user)
            yield self._event(
                user, "page_view", ts, {"url": f"/p/{product.sku}", "category": product.category, "sku": product.sku}
            )
            if rng.random() < 0.35:
                yield self._event(
                    user,
                    "click",
                    ts,
                    {"url": f"/p/{product.sku}#buy", "category": product.category, "sku": product.sku},
                )
            if rng.random() < 0.2:
                yield from self._add_to_cart(user, product, ts)
        if user.cart and rng.random() < 0.1:
            sku = rng.choice(list(user.cart))
            del user.cart[sku]
            yield self._event(user, "cart_remove", ts, {"cart_id": user.cart_id, "sku": sku})
        if user.cart and rng.random() < 0.4:
            yield self._purchase(user, ts)
        if rng.random() < 0.08:
            yield self._event(user, "email_open", ts, {"job_id": f"job-{rng.randrange(10**6)}"})
            if rng.random() < 0.4:
                yield self._event(user, "email_click", ts, {"job_id": f"job-{rng.randrange(10**6)}", "url": "/offers"})
        if rng.random() < 0.01:
            yield self._event(
                user, "profile_update", ts, {"traits": {"age": rng.randint(18, 80), "vip": rng.random() < 0.1}}
            )
        if rng.random() < 0.002:
            yield self._event(user, "unsubscribe", ts, {"list": "marketing"})

    def _add_to_cart(self, user: _User, product: Product, ts: int) -> Iterator[dict[str, Any]]:
        if user.cart_id is None:
            user.carts_opened += 1
            user.cart_id = f"c-{user.user_id}-{user.carts_opened}"
        user.cart[product.sku] = product
        item = {
            "sku": product.sku,
            "name": product.name,
            "category": product.category,
            "price": product.price,
            "quantity": 1,
        }
        yield self._event(user, "cart_add", ts, {"cart_id": user.cart_id, "item": item})

    def _purchase(self, user: _User, ts: int) -> dict[str, Any]:
        items = [
            {"sku": p.sku, "name": p.name, "category": p.category, "price": p.price, "quantity": 1}
            for p in user.cart.values()
        ]
        total = round(sum(p.price for p in user.cart.values()), 2)
        properties = {
            "order_id": f"o-{user.cart_id}",
            "cart_id": user.cart_id,
            "items": items,
            "total": total,
            "currency": "EUR",
        }
        user.cart = {}
        user.cart_id = None
        return self._event(user, "purchase", ts, properties)

    def _pick(self, user: _User) -> Product:
        # Four in five views fall in the user's taste group: the planted structure.
        category = self._rng.choice(user.taste) if self._rng.random() < 0.8 else self._rng.choice(CATEGORIES)
        return self._rng.choice(self._by_category[category])

    def _context(self, user: _User) -> dict[str, Any]:
        locale, timezone, country = self._rng.choice(PLACES)
        context: dict[str, Any] = {
            "locale": locale,
            "timezone": timezone,
            "country": country,
            "device": self._rng.choice(DEVICES),
        }
        if self._rng.random() < 0.97:
            context["email"] = f"{user.user_id}@example.com"
        if self._rng.random() < 0.85:
            context["first_name"] = self._rng.choice(FIRST_NAMES)
        return context

    def _event(
        self, user: _User, event_type: str, ts: int, properties: dict[str, Any], context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self._sequence += 1
        return shop_event(f"ev-{self._sequence:010d}", user.user_id, event_type, ts, properties, context)


def shop_event(
    event_id: str, user_id: str, event_type: str, ts: int, properties: dict[str, Any], context: Any = None
) -> dict[str, Any]:
    """An event of the contract as a generator publishes it (`context` only when it has one)."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "user_id": user_id,
        "type": event_type,
        "timestamp": ts,
        "properties": properties,
    }
    if context:
        event["context"] = context
    return event


async def publish(
    settings: Settings, *, users: int, limit: int | None, rate: float | None, seed: int, world: str = "shipped"
) -> int:
    """Send generated events to the events topic, paced at `rate` per second; return how many.
    The long-tail world first sends its products to the catalogue topic."""
    from aiokafka import AIOKafkaProducer

    from app.tools.generator_longtail import LongTailGenerator

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        generator: EventGenerator | LongTailGenerator
        if world == "longtail":
            longtail = LongTailGenerator(users, seed)
            for sku, entry in longtail.catalogue():
                await producer.send(settings.catalog_topic, orjson.dumps(entry), key=sku.encode())
            generator = longtail
        else:
            generator = EventGenerator(users, seed)
        for key, value in generator.messages():
            await producer.send(settings.events_topic, value, key=key)
            sent += 1
            if limit is not None and sent >= limit:
                break
            if rate is not None and sent % 50 == 0:
                await keep_pace(sent, rate, started)
            if sent % 10_000 == 0:
                log.info("generator: %d events sent", sent)
        await producer.flush()
    finally:
        await producer.stop()
    return sent
