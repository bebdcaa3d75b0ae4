"""A generated shop with planted engagement signal, for `tidemail eval`'s engagement models.

Every user has a lasting taste for buying (`buyer`), a spending level (`spender`), an
interest in email (`reader`, half shared with `buyer`) and a day-to-day intent that drifts
(an AR(1) process, `intent`). Intent and buyer drive visits, both drive purchases,
spenders buy a little more often and spend more, and readers open the shop's emails,
which come every few days, each at the user's habitual local hour (within an hour or so,
and one in four at any hour the fleet favours). High intent shows in longer visits and
more carts, as it does in shops. So recency, frequency, money, sessions and
email engagement all carry some of a user's chance to buy, and the chance itself is known
(`Shopper.purchase_odds`), which bounds what any model can reach.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.tools.generator import PLACES
from models.send_time import next_local_hour
from streams.core.events import Event

DAY_MS = 86_400_000
# Monday 2026-11-30 00:00 UTC.
START_MS = 1_796_083_200_000
INTENT_MEMORY = 0.95
VISIT_BASE, VISIT_BUYER, VISIT_INTENT = -1.6, 0.6, 1.0
BUY_BASE, BUY_BUYER, BUY_SPENDER, BUY_INTENT = -4.0, 0.9, 0.4, 1.2
OPEN_BASE, OPEN_READER = -0.6, 1.2
PAGES_INTENT = 0.5
CART_BASE, CART_INTENT = -1.8, 0.8
EMAIL_EVERY_DAYS = 3
# Where users' habitual hours lie: mornings, evenings, or anywhere.
HABITS = ((0.4, 8.0), (0.35, 20.0))
HABIT_SPREAD_HOURS = 1.0
OFF_HABIT_SHARE = 0.25
FLEET_HOURS = (7, 8, 9, 12, 13, 18, 19, 20, 21, 22)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(slots=True)
class Shopper:
    user_id: str
    timezone: str
    buyer: float
    spender: float
    reader: float
    habit_hour: int
    intent: float = 0.0

    def purchase_odds(self) -> float:
        """The chance to buy within the next 7 days, given today's intent (what only the
        world knows; the models see behaviour)."""
        stay = 1.0
        for day in range(7):
            stay *= 1.0 - self.daily_purchase_chance(self.intent * INTENT_MEMORY**day)
        return 1.0 - stay

    def daily_purchase_chance(self, intent: float) -> float:
        return _sigmoid(BUY_BASE + BUY_BUYER * self.buyer + BUY_SPENDER * self.spender + BUY_INTENT * intent)


class EngagementWorld:
    """`users` shoppers, day by day: `day(n)` gives that day's events, in time order."""

    def __init__(self, users: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self.shoppers = [self._shopper(n) for n in range(users)]
        self._sequence = 0
        # Events generated for a later day (an email opened at a local hour that is tomorrow in UTC).
        self._later: list[Event] = []

    def _shopper(self, n: int) -> Shopper:
        rng = self._rng
        buyer = rng.gauss(0, 1)
        draw, hour = rng.random(), rng.randrange(24)
        for share, centre in HABITS:
            if draw < share:
                hour = round(rng.gauss(centre, 1.5)) % 24
                break
            draw -= share
        return Shopper(
            f"s{n:06d}",
            rng.choice(PLACES)[1],
            buyer,
            rng.gauss(0, 1),
            0.5 * buyer + math.sqrt(0.75) * rng.gauss(0, 1),
            hour,
            rng.gauss(0, 1),
        )

    def day(self, n: int) -> list[Event]:
        """Day `n`'s events (from START_MS), in time order."""
        events, self._later = self._later, []
        for shopper in self.shoppers:
            shopper.intent = INTENT_MEMORY * shopper.intent + math.sqrt(1 - INTENT_MEMORY**2) * self._rng.gauss(0, 1)
            events += self._user_day(shopper, START_MS + n * DAY_MS, first=n == 0)
        end = START_MS + (n + 1) * DAY_MS
        self._later = [e for e in events if e.timestamp_ms >= end]
        return sorted((e for e in events if e.timestamp_ms < end), key=lambda e: e.timestamp_ms)

    def _user_day(self, shopper: Shopper, day_ms: int, first: bool) -> Iterator[Event]:
        rng = self._rng
        if first:
            context = {"timezone": shopper.timezone, "email": f"{shopper.user_id}@example.com"}
            yield self._event(shopper, "signup", day_ms, {"source": "web"}, context)
        visit = _sigmoid(VISIT_BASE + VISIT_BUYER * shopper.buyer + VISIT_INTENT * shopper.intent)
        buys = rng.random() < shopper.daily_purchase_chance(shopper.intent)
        if buys or rng.random() < visit:
            yield from self._session(shopper, day_ms + rng.randrange(DAY_MS - 3_600_000), buys)
        if rng.randrange(EMAIL_EVERY_DAYS) == 0 and rng.random() < _sigmoid(OPEN_BASE + OPEN_READER * shopper.reader):
            at = self._local_hour_ms(shopper, day_ms)
            job = {"job_id": f"job-{shopper.user_id}-{day_ms}"}
            yield self._event(shopper, "email_open", at, job)
            if rng.random() < 0.3:
                yield self._event(shopper, "email_click", at + 60_000, {**job, "url": "/offers"})

    def _session(self, shopper: Shopper, at: int, buys: bool) -> Iterator[Event]:
        """A visit: more pages and a cart more often when intent is high (as shops see it)."""
        rng = self._rng
        sku = f"SKU-{rng.randrange(200):03d}"
        pages = 1 + min(int(rng.expovariate(1.0) * math.exp(PAGES_INTENT * shopper.intent)), 12)
        for step in range(pages):
            yield self._event(shopper, "page_view", at + step, {"url": f"/p/{sku}", "sku": sku, "category": "shop"})
        if buys or rng.random() < _sigmoid(CART_BASE + CART_INTENT * shopper.intent):
            price = round(math.exp(3.5 + 0.5 * shopper.spender + 0.3 * rng.gauss(0, 1)), 2)
            item = {"sku": sku, "name": sku, "category": "shop", "price": price, "quantity": 1}
            cart = f"c-{shopper.user_id}-{at}"
            yield self._event(shopper, "cart_add", at + 100, {"cart_id": cart, "item": item})
            if buys:
                order = {"order_id": f"o-{cart}", "cart_id": cart, "items": [item], "total": price, "currency": "EUR"}
                yield self._event(shopper, "purchase", at + 200, order)

    def _local_hour_ms(self, shopper: Shopper, day_ms: int) -> int:
        """The first instant from `day_ms` at the user's habitual local hour or near it."""
        rng = self._rng
        if rng.random() < OFF_HABIT_SHARE:
            hour = rng.choice(FLEET_HOURS)
        else:
            hour = round(rng.gauss(shopper.habit_hour, HABIT_SPREAD_HOURS)) % 24
        at = next_local_hour(hour, day_ms, day_ms + 2 * DAY_MS, shopper.timezone) or day_ms
        return at - at % 3_600_000 + rng.randrange(3_000_000)

    def _event(
        self,
        shopper: Shopper,
        kind: str,
        at: int,
        properties: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> Event:
        self._sequence += 1
        return Event(f"w-{self._sequence:09d}", shopper.user_id, kind, at, dict(properties), dict(context or {}))
