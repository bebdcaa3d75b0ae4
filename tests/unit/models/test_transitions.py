from __future__ import annotations

from models.interactions import Interaction
from models.transitions import LEARNED_PER_ITEM, MILLIS_PER_DAY, Transitions
from tests.factories import BASE_TS


def touch(t: Transitions, user: str, sku: str, at_ms: int = BASE_TS, order: str | None = None) -> None:
    t.learn_one((Interaction(user, sku, 8.0 if order else 1.0, at_ms, order), None))


def test_successors_follow_a_user_across_sessions_and_look_a_few_steps_back() -> None:
    t = Transitions(half_life_days=30)
    touch(t, "u1", "TENT")
    touch(t, "u1", "TENT")  # the same product again (a view, then a click) is no step
    touch(t, "u1", "LAMP", BASE_TS + 3 * MILLIS_PER_DAY)  # another session, days later
    touch(t, "u1", "PEGS", BASE_TS + 9 * MILLIS_PER_DAY)
    touch(t, "u2", "MUG")  # another user's products are not this one's successors
    tables = t.export()
    successors = {sku: dict(followers) for sku, followers in tables.successors.items()}
    assert set(successors) == {"TENT", "LAMP"}
    # One step back counts whole, two steps back half.
    assert successors["TENT"]["PEGS"] == successors["LAMP"]["PEGS"] / 2
    assert "TENT" not in successors["TENT"]
    assert tables.next_after == {"TENT": [("LAMP", 1.0)], "LAMP": [("PEGS", 1.0)]}


def test_bought_a_then_later_b_is_learned_one_way_and_a_basket_both_ways() -> None:
    t = Transitions(half_life_days=30)
    touch(t, "u1", "TENT", order="o1")
    touch(t, "u1", "STOVE", order="o1")
    touch(t, "u1", "PEGS", BASE_TS + 7 * MILLIS_PER_DAY, order="o2")
    together = {sku: {other for other, _ in others} for sku, others in t.export().together.items()}
    assert together == {"TENT": {"STOVE", "PEGS"}, "STOVE": {"TENT", "PEGS"}}
    assert "PEGS" not in together  # bought last: nothing was bought after it


def test_counts_halve_every_half_life_relative_to_the_latest_interaction() -> None:
    t = Transitions(half_life_days=10)
    touch(t, "u1", "OLD")
    touch(t, "u2", "NEW", BASE_TS + 10 * MILLIS_PER_DAY)
    counts = t.export().counts
    assert counts["NEW"] == 1.0 and abs(counts["OLD"] - 0.5) < 1e-6


def test_a_long_gap_rescales_counts_once_and_keeps_decaying() -> None:
    t = Transitions(half_life_days=1)
    touch(t, "u1", "A")
    touch(t, "u1", "B")
    touch(t, "u2", "A", BASE_TS + 100 * MILLIS_PER_DAY)  # a scale of 2^100 is past the rescaling point
    touch(t, "u2", "B", BASE_TS + 100 * MILLIS_PER_DAY)
    touch(t, "u3", "B", BASE_TS + 101 * MILLIS_PER_DAY)
    tables = t.export()
    # What happened 100 half-lives ago is gone; a day (a half-life) ago counts half.
    assert abs(tables.counts["A"] - 0.5) < 1e-9 and abs(tables.counts["B"] - 1.5) < 1e-9
    assert abs(dict(tables.successors["A"])["B"] - 0.5) < 1e-9


def test_a_restored_learner_continues_from_the_snapshot() -> None:
    t = Transitions(half_life_days=30)
    for n in range(3):
        touch(t, f"u{n}", "TENT", BASE_TS + n)
        touch(t, f"u{n}", "PEGS", BASE_TS + n)
    copy = Transitions(half_life_days=30)
    copy.restore(t.export())
    assert copy.export() == t.export()
    touch(copy, "u9", "TENT", BASE_TS + 10)
    touch(copy, "u9", "PEGS", BASE_TS + 10)
    assert dict(copy.export().next_after["TENT"])["PEGS"] == 4.0


def test_successors_per_product_stay_bounded() -> None:
    t = Transitions(half_life_days=30)
    for n in range(3 * LEARNED_PER_ITEM):
        touch(t, f"u{n}", "HUB", BASE_TS + n)
        touch(t, f"u{n}", f"S{n}", BASE_TS + n)
    assert len(t._successors["HUB"]) <= LEARNED_PER_ITEM
