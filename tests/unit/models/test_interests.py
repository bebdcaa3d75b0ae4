from __future__ import annotations

import pytest

from models.interests import MILLIS_PER_DAY, bump, decayed, top


def test_score_halves_after_one_half_life() -> None:
    assert decayed(8.0, 0, 14 * MILLIS_PER_DAY, half_life_days=14) == pytest.approx(4.0)
    assert decayed(8.0, 100, 50, half_life_days=14) == 8.0


def test_bump_keeps_the_strongest_categories() -> None:
    interests: dict[str, list[float]] = {}
    for n, category in enumerate(["a", "b", "c", "a"]):
        interests = bump(interests, category, weight=1 + n, now_ms=0, half_life_days=14, keep=2)
    assert set(interests) == {"a", "c"}
    assert top(interests, 0, 14)[0] == ("a", 4.0)


def test_bump_does_not_mutate_and_late_events_keep_reference_time() -> None:
    original = {"a": [2.0, 10 * MILLIS_PER_DAY]}
    updated = bump(original, "a", 1.0, now_ms=0, half_life_days=14, keep=5)
    assert original == {"a": [2.0, 10 * MILLIS_PER_DAY]}
    assert updated["a"] == [3.0, 10 * MILLIS_PER_DAY]
