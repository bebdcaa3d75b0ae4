"""Send-time optimisation: when in the week each user opens and clicks email.

A user's part is a sparse count per hour of the week (Monday 00:00 local time is hour
0) in their state; the fleet's part is the same histogram over every user, kept by the
item trainer and shipped in its snapshots. A user's best hour is the peak of their
counts smoothed by the fleet's, so a new user gets the fleet's best hour and a user with
a clear habit gets their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOURS_PER_WEEK = 168
# The fleet's favourite hour counts as this many of a user's own engagements: one
# open at 3 a.m. does not move a user's send time, a habit does.
PRIOR_PEAK_WEIGHT = 2.0
# Counts are halved past this total, so a habit that changes wins within weeks.
MAX_USER_TOTAL = 64.0
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class SendTime:
    hour_of_week: int
    confidence: float  # the share of the smoothed distribution at that hour
    engagements: float  # the user's own evidence behind it

    @property
    def label(self) -> str:
        return f"{DAYS[self.hour_of_week // 24]} {self.hour_of_week % 24:02d}:00"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def hour_of_week(timestamp_ms: int, timezone: str | None) -> int:
    local = datetime.fromtimestamp(timestamp_ms / 1000, tz=zone(timezone))
    return local.weekday() * 24 + local.hour


def add_engagement(counts: dict[str, float], hour: int) -> dict[str, float]:
    """The user's counts with one more engagement at `hour` (a new dict)."""
    updated = {**counts, str(hour): counts.get(str(hour), 0.0) + 1.0}
    if sum(updated.values()) > MAX_USER_TOTAL:
        updated = {h: c / 2 for h, c in updated.items() if c / 2 >= 0.25}
    return updated


def best_send_time(counts: dict[str, float], prior: list[float]) -> SendTime | None:
    """The hour with the most smoothed engagement; None when nothing is known at all."""
    prior_peak = max(prior, default=0.0)
    own_total = sum(counts.values())
    if prior_peak <= 0 and own_total <= 0:
        return None
    scale = PRIOR_PEAK_WEIGHT / prior_peak if prior_peak > 0 else 0.0
    smoothed = [prior[h] * scale + counts.get(str(h), 0.0) for h in range(HOURS_PER_WEEK)]
    best = max(range(HOURS_PER_WEEK), key=lambda h: smoothed[h])
    return SendTime(best, round(smoothed[best] / sum(smoothed), 4), own_total)


def next_occurrence(hour: int, now_ms: int, timezone: str | None) -> int:
    """The first instant at or after `now_ms` that is `hour` of the week in the user's zone."""
    tz = zone(timezone)
    now = datetime.fromtimestamp(now_ms / 1000, tz=tz)
    week_start = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = week_start + timedelta(hours=hour)
    if candidate < now:
        candidate += timedelta(weeks=1)
    # Re-localise: a week that crosses a daylight-saving change shifts the wall clock.
    candidate = candidate.replace(tzinfo=None).replace(tzinfo=tz)
    return int(candidate.astimezone(UTC).timestamp() * 1000)
