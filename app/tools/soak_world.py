"""The soak's shop: a seeded stream of sessions over up to a million users or more, made in
constant memory (nothing is kept per user), every user seen at least once by the stream's end.

Users are visited in a scrambled order, so each partition gets new users all along. A
session is either a new user's first visit (one in five signs up; the rest are customers
from before, whose first event carries their profile; three in ten leave after it) or a return of a user already seen,
the recently active more often. Sessions browse, click, fill and abandon or buy carts,
open and click emails, update profiles and now and then unsubscribe or subscribe.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from app.settings import Settings
from app.tools.generator import BROKEN_MESSAGES, CATEGORIES, DEVICES, FIRST_NAMES, PLACES, TASTE_GROUPS, catalog
from streams.core.governance import QuietHours

SIGNUP_SHARE = 0.2
# First visits that are one event: a landing page, or a signup, and gone.
LIGHT_SHARE = 0.3
# New users' first visits are spread so that the last comes a little before the end.
NEW_USER_MARGIN = 0.9
# The default quiet hours (21-8 in each user's zone) as they fall at noon UTC: in winter New
# York's and Tokyo's users are held, London's, Berlin's and Paris's sent, near the day's mean
# (each zone is sendable 13 hours of 24). How many emails the deliverer sends beside the
# workers decides how much of the two cores they get, so the soak must not depend on the hour.
QUIET_HOURS_AT = 12


def steady_quiet_hours(now_ms: int) -> str:
    """`TIDEMAIL_QUIET_HOURS` that hold the zones the default quiet hours hold at noon UTC,
    moved with the hour `now_ms` falls in: the soak holds the same users' emails whenever it runs."""
    default = QuietHours.parse(Settings().quiet_hours)
    if default is None:
        raise ValueError("the soak's quiet hours are the default ones moved; the default has none")
    shift = datetime.fromtimestamp(now_ms / 1000, tz=UTC).hour - QUIET_HOURS_AT
    return f"{(default.start + shift) % 24}-{(default.end + shift) % 24}"


def scrambled(index: int, users: int) -> int:
    """The `index`-th user visited first: a fixed permutation of 0..users-1 (a stride prime to `users`)."""
    return (index * _stride(users) + 12_345) % users


def _stride(users: int) -> int:
    stride = int(users * 0.618_033_988) | 1
    while math.gcd(stride, users) != 1:
        stride += 2
    return stride


class SoakWorld:
    """`messages(events)`: exactly `events` (key, value) messages, keyed by user id, timestamped by `now_ms`."""

    def __init__(self, users: int, seed: int, broken_share: float = 0.001) -> None:
        self.users = users
        self._rng = random.Random(seed)
        self._products = catalog()
        self._by_category = {c: [p for p in self._products if p.category == c] for c in CATEGORIES}
        self._by_sku = {p.sku: p for p in self._products}
        self._broken_share = broken_share
        self._seen = 0
        self._sequence = 0
        self._sessions = 0

    @property
    def users_seen(self) -> int:
        return self._seen

    def user_id(self, n: int) -> str:
        return f"u{n:07d}"

    def messages(self, events: int, now_ms: Any) -> Iterator[tuple[bytes, bytes]]:
        sent = 0
        while sent < events:
            if self._rng.random() < self._broken_share:
                sent += 1
                yield b"u-broken", self._rng.choice(BROKEN_MESSAGES)
                continue
            n, first_visit = self._next_user(events - sent)
            key = self.user_id(n).encode()
            for event in self._session(n, first_visit, now_ms()):
                yield key, orjson.dumps(event)
                sent += 1
                if sent >= events:
                    return

    def _next_user(self, events_left: int) -> tuple[int, bool]:
        """A new user with the share of sessions that leaves none unseen at the end, else a return."""
        new_left = self.users - self._seen
        self._sessions += 1
        mean_session_events = max(1.0, self._sequence / self._sessions)
        sessions_left = max(1.0, NEW_USER_MARGIN * events_left / mean_session_events)
        if new_left and (self._seen == 0 or self._rng.random() < new_left / sessions_left):
            self._seen += 1
            return scrambled(self._seen - 1, self.users), True
        # Returns lean towards users seen lately: an index near the top of those seen.
        back = int(self._seen * self._rng.random() ** 3)
        return scrambled(self._seen - 1 - back, self.users), False

    def _session(self, n: int, first_visit: bool, ts: int) -> Iterator[dict[str, Any]]:
        rng = self._rng
        if first_visit:
            profile = self._profile(n)
            if rng.random() < SIGNUP_SHARE:
                yield self._event(n, "signup", ts, {"source": rng.choice(("web", "app", "referral"))}, profile)
            else:
                yield self._event(n, "page_view", ts, self._view(n), profile)
            if rng.random() < LIGHT_SHARE:
                return
        cart: list[dict[str, Any]] = []
        cart_id = f"c-{n}-{self._sequence}"
        for _ in range(rng.randint(1, 3)):
            view = self._view(n)
            yield self._event(n, "page_view", ts, view)
            if rng.random() < 0.3:
                yield self._event(n, "click", ts, {**view, "url": view["url"] + "#buy"})
            if rng.random() < 0.15:
                cart.append(self._item(view["sku"]))
                yield self._event(n, "cart_add", ts, {"cart_id": cart_id, "item": cart[-1]})
        if cart and rng.random() < 0.1:
            yield self._event(n, "cart_remove", ts, {"cart_id": cart_id, "sku": cart.pop()["sku"]})
        if cart and rng.random() < 0.4:
            yield self._purchase(n, ts, cart_id, cart)
        yield from self._engagement(n, ts)

    def _engagement(self, n: int, ts: int) -> Iterator[dict[str, Any]]:
        rng = self._rng
        if rng.random() < 0.1:
            yield self._event(n, "email_open", ts, {"job_id": f"job-{rng.randrange(10**7)}"})
            if rng.random() < 0.4:
                yield self._event(n, "email_click", ts, {"job_id": f"job-{rng.randrange(10**7)}", "url": "/offers"})
        if rng.random() < 0.01:
            traits = {"age": rng.randint(18, 80), "vip": rng.random() < 0.1}
            yield self._event(n, "profile_update", ts, {"traits": traits})
        if rng.random() < 0.002:
            yield self._event(n, "unsubscribe", ts, {"list": "marketing"})
        elif rng.random() < 0.005:
            yield self._event(n, "subscribe", ts, {"list": "marketing"})

    def _profile(self, n: int) -> dict[str, Any]:
        rng = self._rng
        locale, timezone, country = rng.choice(PLACES)
        profile: dict[str, Any] = {"locale": locale, "timezone": timezone, "country": country}
        profile["device"] = rng.choice(DEVICES)
        if rng.random() < 0.97:
            profile["email"] = f"{self.user_id(n)}@example.com"
        if rng.random() < 0.85:
            profile["first_name"] = rng.choice(FIRST_NAMES)
        return profile

    def _view(self, n: int) -> dict[str, Any]:
        # Four views in five fall in the user's taste group.
        taste = TASTE_GROUPS[n % len(TASTE_GROUPS)]
        category = self._rng.choice(taste) if self._rng.random() < 0.8 else self._rng.choice(CATEGORIES)
        product = self._rng.choice(self._by_category[category])
        return {"url": f"/p/{product.sku}", "category": product.category, "sku": product.sku}

    def _item(self, sku: str) -> dict[str, Any]:
        product = self._by_sku[sku]
        return {"sku": sku, "name": product.name, "category": product.category, "price": product.price, "quantity": 1}

    def _purchase(self, n: int, ts: int, cart_id: str, cart: list[dict[str, Any]]) -> dict[str, Any]:
        total = round(sum(item["price"] for item in cart), 2)
        properties = {"order_id": f"o-{cart_id}", "cart_id": cart_id, "items": cart, "total": total, "currency": "EUR"}
        return self._event(n, "purchase", ts, properties)

    def _event(
        self, n: int, event_type: str, ts: int, properties: dict[str, Any], context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self._sequence += 1
        event: dict[str, Any] = {
            "event_id": f"soak-{self._sequence:011d}",
            "user_id": self.user_id(n),
            "type": event_type,
            "timestamp": ts,
            "properties": properties,
        }
        if context:
            event["context"] = context
        return event
