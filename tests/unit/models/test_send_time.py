from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from models.send_time import (
    HOURS_PER_WEEK,
    MAX_USER_TOTAL,
    add_engagement,
    best_send_time,
    hour_of_week,
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


def test_new_users_get_the_fleet_prior() -> None:
    best = best_send_time({}, prior_peaking_at(33))
    assert best is not None and best.hour_of_week == 33 and best.label == "Tue 09:00" and best.engagements == 0
    assert best_send_time({}, [0.0] * HOURS_PER_WEEK) is None


def test_a_clear_habit_beats_the_prior_and_raises_confidence() -> None:
    counts: dict[str, float] = {}
    for _ in range(6):
        counts = add_engagement(counts, 140)
    best = best_send_time(counts, prior_peaking_at(33))
    assert best is not None and best.hour_of_week == 140
    weak = best_send_time(add_engagement({}, 140), prior_peaking_at(33))
    assert weak is not None and weak.hour_of_week == 33
    assert best.confidence > weak.confidence


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
    monday_nine = next_occurrence(9, now, zone)
    assert monday_nine == ms("2026-03-30 09:00", zone)
    assert next_occurrence(4 * 24 + 12, now, zone) == now  # this very hour counts
