from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from models.send_time import (
    HOURS_PER_WEEK,
    MAX_USER_TOTAL,
    SendTime,
    add_engagement,
    best_send_time,
    hour_of_week,
    next_local_hour,
    next_occurrence,
)


def ms(text: str, zone: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def prior_peaking_at(hour: int) -> list[float]:
    return [10.0 if h == hour else 1.0 for h in range(HOURS_PER_WEEK)]


@pytest.mark.parametrize(
    ("local", "zone", "hour"),
    [
        ("2026-11-30 00:30", "Europe/London", 0),  # Monday just after midnight
        ("2026-11-28 19:05", "Asia/Tokyo", 5 * 24 + 19),  # Saturday evening
        ("2026-11-29 23:59", "America/New_York", 6 * 24 + 23),
    ],
)
def test_hour_of_week_is_local(local: str, zone: str, hour: int) -> None:
    assert hour_of_week(ms(local, zone), zone) == hour


def test_unknown_time_zone_counts_in_utc() -> None:
    assert hour_of_week(ms("2026-11-30 08:00", "UTC"), "Mars/Olympus") == 8


def test_new_users_get_the_fleets_hour_of_the_day() -> None:
    best = best_send_time({}, prior_peaking_at(33))
    assert best is not None and (best.hour, best.weekday, best.label, best.engagements) == (9, None, "09:00", 0)
    assert best_send_time({}, [0.0] * HOURS_PER_WEEK) is None


def engaged(*hours: int) -> dict[str, float]:
    counts: dict[str, float] = {}
    for hour in hours:
        counts = add_engagement(counts, hour)
    return counts


def test_a_clear_habit_beats_the_fleet_and_raises_confidence() -> None:
    friday_20 = 4 * 24 + 20
    best = best_send_time(engaged(*[friday_20] * 6), prior_peaking_at(33))
    assert best is not None and (best.hour, best.weekday, best.label) == (20, 4, "Fri 20:00")
    weak = best_send_time(engaged(friday_20), prior_peaking_at(33))
    assert weak is not None and (weak.hour, weak.weekday) == (9, None)
    assert best.confidence > weak.confidence


def test_neighbouring_hours_add_up_and_days_are_named_only_on_evidence() -> None:
    # Opens at 7, 8 and 9 on every day of the week: 8 o'clock, and no day stands out.
    spread = [day * 24 + hour for day in range(7) for hour in (7, 8, 8, 9)]
    best = best_send_time(engaged(*spread), prior_peaking_at(20))
    assert best is not None and (best.hour, best.weekday) == (8, None)
    # Two opens at 22:00 with one either side beat two at 3:00.
    late = engaged(3, 3, 21, 22, 22, 23)
    assert (picked := best_send_time(late, prior_peaking_at(33))) is not None and picked.hour == 22


def test_counts_stay_bounded_and_input_is_not_modified() -> None:
    counts: dict[str, float] = {"1": 1.0}
    updated = add_engagement(counts, 2)
    assert counts == {"1": 1.0} and updated == {"1": 1.0, "2": 1.0}
    for n in range(500):
        updated = add_engagement(updated, n % 3)
    assert sum(updated.values()) <= MAX_USER_TOTAL and set(updated) <= {"0", "1", "2"}


def test_next_occurrence_is_the_coming_local_hour_across_daylight_saving() -> None:
    zone = "Europe/Berlin"
    now = ms("2026-03-27 12:00", zone)  # Friday; clocks go forward on Sunday the 29th
    assert next_occurrence(SendTime(9, 0, 0.5, 8), now, zone) == ms("2026-03-30 09:00", zone)
    assert next_occurrence(SendTime(12, 4, 0.5, 8), now, zone) == now  # this very hour counts
    assert next_occurrence(SendTime(9, None, 0.5, 8), now, zone) == ms("2026-03-28 09:00", zone)
    assert next_occurrence(SendTime(12, None, 0.5, 8), now + 1_000, zone) == now + 1_000


def test_next_local_hour_stays_within_its_window() -> None:
    zone = "Asia/Tokyo"
    now = ms("2026-12-01 10:30", zone)
    assert next_local_hour(20, now, now + 86_400_000, zone) == ms("2026-12-01 20:00", zone)
    assert next_local_hour(9, now, now + 86_400_000, zone) == ms("2026-12-02 09:00", zone)
    assert next_local_hour(9, now, now + 12 * 3_600_000, zone) is None
