"""The chaos run's world: the generator's shop traffic with some new users erased, and quiet
hours chosen so that those users' welcome emails are still waiting when their erasure comes.

Quiet hours start at the current hour in `HELD_ZONE` and last three hours; no other zone the
generator uses is inside them, so every other user's email is due at once while the faults
fly, and the held ones only when the run moves the deliverer's clock past them at the end.
An erased user's email is then certain to have been waiting when the erasure was published:
sending it would be a failure, not a race.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from app.tools.generator import EventGenerator, shop_event, user_id
from streams.core.erasure import erase_event

HELD_ZONE = "Asia/Tokyo"
QUIET_HOURS_LONG = 3
# How much later in the stream an erasure follows the signup (messages), so it is usually
# processed in a later batch than the job it withholds.
ERASE_AFTER = (200, 3_000)


def held_quiet_hours(at_ms: int) -> str:
    """`TIDEMAIL_QUIET_HOURS` holding `HELD_ZONE`'s emails for two to three hours from `at_ms`."""
    hour = datetime.fromtimestamp(at_ms / 1000, tz=ZoneInfo(HELD_ZONE)).hour
    return f"{hour}-{(hour + QUIET_HOURS_LONG) % 24}"


def world_messages(
    users: int, events: int, seed: int, erase_share: float, crm_sync: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """`events` (key, value) messages: the generator's, and an erase for `erase_share` of the
    users signing up in `HELD_ZONE`, some messages after their signup. With `crm_sync`, the
    shop's CRM also publishes every user's profile once, spread evenly over the run in a
    seeded order: the generator's long tail visits only a third of a million users in two
    million events, and a run that claims a million users must hold a state for each."""
    rng = random.Random(seed ^ 0x5EED)
    waiting: list[tuple[int, str]] = []
    profiles, to_sync = crm_profiles(users, seed), users if crm_sync else 0
    synced = 0
    sent = 0
    for key, value in EventGenerator(users, seed).messages():
        # The n-th message is a profile while fewer than users * n / events were published.
        while synced < to_sync and synced * events < users * (sent + 1) and sent < events:
            yield next(profiles)
            synced += 1
            sent += 1
        if sent >= events:
            return
        while waiting and waiting[0][0] <= sent and sent < events:
            _, user = waiting.pop(0)
            yield user.encode(), orjson.dumps(erase_event(user, f"erase-{user}", int(time.time() * 1000), "chaos"))
            sent += 1
        if sent >= events:
            return
        yield key, value
        sent += 1
        if b'"signup"' in value and rng.random() < erase_share and _zone(value) == HELD_ZONE:
            waiting.append((sent + rng.randint(*ERASE_AFTER), key.decode()))
            waiting.sort()


def _zone(value: bytes) -> str | None:
    context = orjson.loads(value).get("context") or {}
    zone = context.get("timezone")
    return zone if isinstance(zone, str) else None


CRM_TIERS = ("bronze", "silver", "gold")


def crm_profiles(users: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """A `profile_update` per user id of the generator, in a seeded order, as a CRM sync sends them."""
    rng = random.Random(seed ^ 0xC4A)
    order = list(range(users))
    rng.shuffle(order)
    for n in order:
        user = user_id(n)
        traits = {"crm_tier": rng.choice(CRM_TIERS), "newsletter": rng.random() < 0.6}
        event = shop_event(f"crm-{user}", user, "profile_update", int(time.time() * 1000), {"traits": traits})
        yield user.encode(), orjson.dumps(event)
