"""Decaying category interests: an exponentially forgetting score per category.

A score is stored with the time it was last touched, so decay is applied lazily
when the score is next read or bumped rather than on every clock tick.
"""

from __future__ import annotations

import math

MILLIS_PER_DAY = 86_400_000


def decayed(score: float, since_ms: int, now_ms: int, half_life_days: float) -> float:
    """The value of `score` set at `since_ms` as seen at `now_ms`."""
    if now_ms <= since_ms:
        return score
    elapsed_days = (now_ms - since_ms) / MILLIS_PER_DAY
    return score * math.pow(0.5, elapsed_days / half_life_days)


def bump(
    interests: dict[str, list[float]],
    category: str,
    weight: float,
    now_ms: int,
    half_life_days: float,
    keep: int,
) -> dict[str, list[float]]:
    """A new interests map with `category` raised by `weight`, keeping the `keep` strongest.

    Each value is `[score, touched_at_ms]`; lists rather than tuples because that is
    what a JSON round trip gives back.
    """
    updated = dict(interests)
    score, touched = updated.get(category, (0.0, now_ms))
    # Out-of-order events must not move the reference time backwards.
    reference = max(int(touched), now_ms)
    updated[category] = [decayed(score, int(touched), reference, half_life_days) + weight, reference]
    if len(updated) > keep:
        ranked = sorted(updated.items(), key=lambda kv: decayed(kv[1][0], int(kv[1][1]), reference, half_life_days))
        for name, _ in ranked[: len(updated) - keep]:
            del updated[name]
    return updated


def top(interests: dict[str, list[float]], now_ms: int, half_life_days: float, n: int = 5) -> list[tuple[str, float]]:
    """The `n` strongest categories with their scores decayed to `now_ms`."""
    scored = [(name, decayed(s, int(t), now_ms, half_life_days)) for name, (s, t) in interests.items()]
    scored.sort(key=lambda kv: kv[1], reverse=True)
    return scored[:n]
