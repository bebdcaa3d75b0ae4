"""Send-time optimisation: the hour of the day each user opens and clicks email.

A user's part is a sparse count of opens and clicks per local hour of the week (Monday
00:00 is hour 0) in their state; the fleet's part is the same histogram over every user,
kept by the item trainer and shipped in its snapshots. A user's best hour is the peak of
their own counts by hour of the day, each hour's count shared with its neighbours (a
habit at 9 shows at 8 and 10 too), shrunk toward the fleet's daily curve: a new user gets
the fleet's best hour, and a user with a clear habit their own. Days of the week split a
user's evidence seven ways, so a day is named only when the user's own opens at that hour
fall mostly on one day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 7 * HOURS_PER_DAY
# The fleet's daily curve is scaled so that its favourite hour counts as this many of a
# user's own engagements: one open at 3 a.m. does not move a user's send time, a habit does.
PRIOR_PEAK_ENGAGEMENTS = 2.0
# How much of an engagement counts at the hours either side of it.
NEIGHBOUR_SHARE = 0.5
# A day is named when at least this many of the user's engagements near the best hour
# were on it, and they are at least this share of those engagements (one in seven by chance).
WEEKDAY_MIN_ENGAGEMENTS = 4.0
WEEKDAY_MIN_SHARE = 0.6
# Counts are halved past this total, so a habit that changes wins within weeks.
MAX_USER_TOTAL = 64.0
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class SendTime:
    hour: int  # local hour of the day, 0-23
    weekday: int | None  # 0 for Monday, when the user's own evidence names a day
    confidence: float  # the share of the smoothed daily distribution at that hour
    engagements: float  # the user's own evidence behind it

    @property
    def label(self) -> str:
        day = f"{DAYS[self.weekday]} " if self.weekday is not None else ""
        return f"{day}{self.hour:02d}:00"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def hour_of_week(timestamp_ms: int, timezone: str | None) -> int:
    local = datetime.fromtimestamp(timestamp_ms / 1000, tz=zone(timezone))
    return local.weekday() * 24 + local.hour


def add_engagement(counts: dict[str, float], hour: int) -> dict[str, float]:
    """The user's counts with one more engagement at `hour` of the week (a new dict)."""
    updated = {**counts, str(hour): counts.get(str(hour), 0.0) + 1.0}
    if sum(updated.values()) > MAX_USER_TOTAL:
        updated = {h: c / 2 for h, c in updated.items() if c / 2 >= 0.25}
    return updated


def daily_curve(week_hours: list[float]) -> list[float]:
    """A histogram by hour of the week folded to hours of the day."""
    return [sum(week_hours[day * HOURS_PER_DAY + hour] for day in range(7)) for hour in range(HOURS_PER_DAY)]


def best_send_time(counts: dict[str, float], prior: list[float]) -> SendTime | None:
    """The user's best local hour (and day, where their evidence names one); None when
    nothing is known at all. `prior` is the fleet's histogram by hour of the week."""
    fleet = daily_curve(prior)
    fleet_peak = max(fleet)
    own = [0.0] * HOURS_PER_DAY
    for key, count in counts.items():
        own[int(key) % HOURS_PER_DAY] += count
    own_total = sum(own)
    if fleet_peak <= 0 and own_total <= 0:
        return None
    scale = PRIOR_PEAK_ENGAGEMENTS / fleet_peak if fleet_peak > 0 else 0.0
    smoothed = [
        fleet[h] * scale + own[h] + NEIGHBOUR_SHARE * (own[h - 1] + own[(h + 1) % HOURS_PER_DAY])
        for h in range(HOURS_PER_DAY)
    ]
    best = max(range(HOURS_PER_DAY), key=lambda h: smoothed[h])
    return SendTime(best, _weekday(counts, best), round(smoothed[best] / sum(smoothed), 4), own_total)


def _weekday(counts: dict[str, float], hour: int) -> int | None:
    """The day on which most of the user's engagements within an hour of `hour` fell, when
    they are enough and concentrated enough to tell."""
    near = {(hour + shift) % HOURS_PER_DAY for shift in (-1, 0, 1)}
    by_day = [0.0] * 7
    for key, count in counts.items():
        if int(key) % HOURS_PER_DAY in near:
            by_day[int(key) // HOURS_PER_DAY] += count
    day = max(range(7), key=lambda d: by_day[d])
    total = sum(by_day)
    if by_day[day] >= WEEKDAY_MIN_ENGAGEMENTS and by_day[day] >= WEEKDAY_MIN_SHARE * total:
        return day
    return None


def next_occurrence(best: SendTime, now_ms: int, timezone: str | None) -> int:
    """The first instant at or after `now_ms` that is the best hour (on its day, if it
    names one) in the user's zone."""
    if best.weekday is None:
        return next_local_hour(best.hour, now_ms, now_ms + 2 * 86_400_000, timezone) or now_ms
    tz = zone(timezone)
    now = datetime.fromtimestamp(now_ms / 1000, tz=tz)
    week_start = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = week_start + timedelta(days=best.weekday, hours=best.hour)
    if candidate.replace(tzinfo=None).replace(tzinfo=tz) < now:
        candidate += timedelta(weeks=1)
    return _utc_ms(candidate.replace(tzinfo=None).replace(tzinfo=tz))


def next_local_hour(hour: int, from_ms: int, until_ms: int, timezone: str | None) -> int | None:
    """The first instant in [from_ms, until_ms] at local `hour` o'clock (the current hour
    counts from `from_ms` itself); None if there is none."""
    tz = zone(timezone)
    start = datetime.fromtimestamp(from_ms / 1000, tz=tz)
    if start.hour == hour:
        return from_ms
    day = start.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    for offset in range(3):
        # Localised after the arithmetic: a daylight-saving change in between shifts the wall clock.
        candidate = _utc_ms((day + timedelta(days=offset, hours=hour)).replace(tzinfo=tz))
        if from_ms <= candidate <= until_ms:
            return candidate
        if candidate > until_ms:
            return None
    return None


def _utc_ms(local: datetime) -> int:
    return int(local.astimezone(UTC).timestamp() * 1000)
