"""Flows through the batch processor with a moved clock and the timer index the hot path keeps."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from app.tools.common import flows_without_segment_triggers
from models.bandits import BanditRecord, Experiment
from streams.core.batch import BatchResult
from streams.core.errors import ConfigError
from streams.core.flow_definitions import FlowBook
from streams.core.flow_engine import JobRequest, job_id
from streams.core.governance import GovernancePolicy, QuietHours, decide
from streams.core.state import UserState
from tests.factories import BASE_TS, event_doc, item
from tests.unit.core.support import OPEN_GOVERNANCE, Store, processor, record, signup

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


class Journey:
    """One partition's users driven by events and by a clock that tests move."""

    def __init__(self, flows_yaml: str | None = None, governance: GovernancePolicy = OPEN_GOVERNANCE) -> None:
        self.now = BASE_TS
        self.processor = processor(flows_yaml=flows_yaml, governance=governance, clock_ms=lambda: self.now)
        self.store = Store()
        self.index: set[tuple[int, str]] = set()
        self.offset = 0
        self.jobs: list[dict[str, Any]] = []
        self.governance: Counter[str] = Counter()
        self.transitions: Counter[str] = Counter()

    def send(self, *docs: dict[str, Any]) -> BatchResult:
        records = []
        for doc in docs:
            records.append(record(self.offset, doc))
            self.offset += 1
        return self._keep(self.processor.process({0: records}, self.store.load))

    def advance(self, millis: int) -> list[dict[str, Any]]:
        """Move the clock, fire what the timer index says is due, return the jobs that came out."""
        self.now += millis
        before = len(self.jobs)
        while due := sorted(entry for entry in self.index if entry[0] <= self.now):
            self._keep(self.processor.on_clock({0: due}, self.store.load))
        return self.jobs[before:]

    def _keep(self, result: BatchResult) -> BatchResult:
        self.store.save(result)
        self.index -= set(result.changes.timer_removals.get(0, []))
        self.index |= set(result.changes.timer_additions.get(0, []))
        self.jobs += result.outputs.jobs
        self.governance.update(result.counts.governance)
        self.transitions.update(result.counts.flow_transitions)
        return result

    def templates(self) -> list[tuple[str, str]]:
        return [(job["user_id"], job["template"]) for job in self.jobs]


def at(offset_ms: int) -> int:
    return BASE_TS + offset_ms


def cart_add(user: str, cart: str, ts: int, sku: str = "OUT-001") -> dict[str, Any]:
    return event_doc("cart_add", user, event_id=f"add-{user}-{cart}-{ts}", ts=ts, cart_id=cart, item=item(sku))


def known(user: str, ts: int = BASE_TS) -> dict[str, Any]:
    """A profile update giving the user an address, without starting the welcome series."""
    doc = event_doc("profile_update", user, event_id=f"profile-{user}", ts=ts)
    doc["properties"] = {"traits": {"email": f"{user}@example.com", "first_name": "Ann"}}
    return doc


# ---- cart abandonment -----------------------------------------------------------------


def test_a_cart_reminder_comes_an_hour_after_the_cart_goes_quiet_and_a_second_a_day_later() -> None:
    journey = Journey()
    journey.send(known("u1"), cart_add("u1", "c1", at(0)))
    assert journey.advance(59 * MINUTE) == []
    journey.send(cart_add("u1", "c1", at(30 * MINUTE), sku="RUN-002"))  # the cart changed: quiet restarts
    assert journey.advance(30 * MINUTE) == []
    [first] = journey.advance(2 * MINUTE)
    assert first["template"] == "cart_reminder" and first["job_id"] == job_id("cart_abandonment", 3, "u1", "c1")
    assert "Item OUT-001" in first["text"] and "Item RUN-002" in first["text"]
    assert first["send_at"].startswith("2026-11-28T09:30")
    assert journey.advance(23 * HOUR) == []
    [second] = journey.advance(2 * HOUR)
    assert second["job_id"] == job_id("cart_abandonment", 6, "u1", "c1")
    assert journey.advance(7 * DAY) == []
    assert journey.transitions["cart_abandonment:completed"] == 1


def test_a_purchase_cancels_the_reminders() -> None:
    journey = Journey()
    journey.send(known("u1"), cart_add("u1", "c1", at(0)))
    journey.send(event_doc("purchase", "u1", ts=at(20 * MINUTE), cart_id="c1"))
    assert journey.advance(3 * DAY) == []
    assert journey.transitions["cart_abandonment:goal"] == 1


def test_two_carts_are_reminded_separately() -> None:
    journey = Journey()
    journey.send(known("u1"), known("u2"), cart_add("u1", "c1", at(0)), cart_add("u2", "c2", at(10 * MINUTE)))
    first = journey.advance(HOUR + MINUTE)
    assert [(j["user_id"], j["job_id"]) for j in first] == [("u1", job_id("cart_abandonment", 3, "u1", "c1"))]
    second = journey.advance(10 * MINUTE)
    assert [(j["user_id"], j["job_id"]) for j in second] == [("u2", job_id("cart_abandonment", 3, "u2", "c2"))]


def test_a_new_cart_replaces_the_old_one_and_a_cart_is_reminded_once() -> None:
    journey = Journey()
    journey.send(known("u1"), cart_add("u1", "c1", at(0)))
    journey.send(cart_add("u1", "c2", at(20 * MINUTE)))
    [reminder] = journey.advance(2 * HOUR)
    assert reminder["job_id"] == job_id("cart_abandonment", 3, "u1", "c2")
    assert journey.transitions["cart_abandonment:superseded"] == 1
    journey.send(event_doc("purchase", "u1", ts=journey.now, cart_id="c2"))
    journey.send(cart_add("u1", "c2", journey.now + MINUTE))  # the same cart id again: once per key
    assert journey.advance(3 * DAY) == []
    assert journey.transitions["cart_abandonment:reentry_refused"] == 1


def test_an_emptied_cart_is_not_reminded() -> None:
    journey = Journey()
    journey.send(known("u1"), cart_add("u1", "c1", at(0)))
    journey.send(event_doc("cart_remove", "u1", ts=at(MINUTE), cart_id="c1", sku="OUT-001"))
    assert journey.advance(2 * DAY) == []


def test_a_wait_that_ended_before_a_late_processed_event_runs_out_first() -> None:
    journey = Journey()
    journey.send(known("u1"), cart_add("u1", "c1", at(0)))
    # The worker was busy: the next event (two hours later in event time) arrives before the timer fired.
    result = journey.send(event_doc("page_view", "u1", ts=at(2 * HOUR)))
    [reminder] = result.outputs.jobs
    assert reminder["send_at"].startswith("2026-11-28T09:00")


def test_a_late_cart_event_cannot_shorten_the_quiet_wait() -> None:
    journey = Journey()
    journey.send(known("u1"), cart_add("u1", "c1", at(30 * MINUTE)))
    journey.send(cart_add("u1", "c1", at(0), sku="RUN-002"))  # stamped before the first
    assert journey.advance(HOUR + 29 * MINUTE) == []
    assert len(journey.advance(2 * MINUTE)) == 1


# ---- welcome series -------------------------------------------------------------------


def test_the_welcome_series_branches_on_browsing_and_skips_buyers() -> None:
    journey = Journey()
    journey.send(signup("browser"), signup("idle"), signup("buyer"))
    journey.send(event_doc("page_view", "browser", ts=at(DAY)), event_doc("page_view", "buyer", ts=at(DAY)))
    assert [t for _, t in journey.templates()] == ["welcome"] * 3
    journey.advance(2 * DAY + MINUTE)
    assert sorted(journey.templates()[3:]) == [
        ("browser", "welcome_browsed"),
        ("buyer", "welcome_browsed"),
        ("idle", "welcome_discover"),
    ]
    journey.send(event_doc("purchase", "buyer", ts=at(3 * DAY)))
    third = journey.advance(3 * DAY)
    assert sorted((j["user_id"], j["template"]) for j in third) == [
        ("browser", "welcome_picks"),
        ("idle", "welcome_picks"),
    ]
    assert journey.transitions["welcome:completed"] == 3


# ---- win-back on entering a segment -----------------------------------------------------


def test_lapsing_starts_the_winback_at_most_once_a_cooldown() -> None:
    journey = Journey()
    journey.send(known("u1"), event_doc("page_view", "u1", ts=at(0)))
    [winback] = journey.advance(30 * DAY + MINUTE)
    assert winback["template"] == "winback"
    journey.send(event_doc("page_view", "u1", event_id="back", ts=journey.now))
    # Lapsed again 30 days later: the 30-day cooldown has passed, so a second run with its own id.
    [again] = journey.advance(30 * DAY + MINUTE)
    assert again["job_id"] != winback["job_id"]


# ---- governance -------------------------------------------------------------------------


def test_unsubscribed_and_hard_bounced_users_get_nothing() -> None:
    journey = Journey()
    journey.send(known("u1"), known("u2"))
    journey.send(event_doc("unsubscribe", "u1"), event_doc("email_bounce", "u2"))
    journey.send(cart_add("u1", "c1", at(MINUTE)), cart_add("u2", "c2", at(MINUTE)))
    assert journey.advance(2 * DAY) == []
    assert journey.governance == {"unsubscribed": 2, "hard_bounced": 2}


REPEATING = """
flows:
  - name: promo
    trigger: {event: click}
    reentry: {cooldown: 1m}
    steps: [{send: winback}]
  - name: receipt
    trigger: {event: purchase}
    key: order_id
    reentry: once_per_key
    category: transactional
    steps: [{send: welcome}]
"""


def test_marketing_is_capped_per_day_and_week_and_transactional_email_is_not() -> None:
    journey = Journey(REPEATING, GovernancePolicy(cap_24h=2, cap_7d=3, quiet_hours=None))
    journey.send(known("u1"))
    for n in range(4):  # four clicks in an hour: two emails
        journey.send(event_doc("click", "u1", event_id=f"c{n}", ts=at(n * 15 * MINUTE)))
    assert journey.governance == {"allowed": 2, "capped_24h": 2}
    for day in (1, 2):  # one a day after that, until the week's three are used
        journey.send(event_doc("click", "u1", event_id=f"d{day}", ts=at(day * DAY + HOUR)))
    assert journey.governance == {"allowed": 3, "capped_24h": 2, "capped_7d": 1}
    for n in range(3):
        journey.send(event_doc("purchase", "u1", event_id=f"p{n}", ts=at(3 * DAY + n), order_id=f"o{n}"))
    assert [j["template"] for j in journey.jobs].count("welcome") == 3


def test_quiet_hours_move_the_send_in_the_users_own_time_zone() -> None:
    quiet = GovernancePolicy(cap_24h=10, cap_7d=10, quiet_hours=QuietHours(21, 8))
    journey = Journey(governance=quiet)
    # 08:00 UTC is 03:00 in New York (quiet), 17:00 in Tokyo and 08:00 in London (allowed).
    for user, zone in (("ny", "America/New_York"), ("tokyo", "Asia/Tokyo"), ("london", "Europe/London")):
        journey.send(signup(user, timezone=zone))
    send_at = {job["user_id"]: job["send_at"] for job in journey.jobs}
    assert send_at == {
        "ny": "2026-11-28T13:00:00.000Z",
        "tokyo": "2026-11-28T08:00:00.000Z",
        "london": "2026-11-28T08:00:00.000Z",
    }
    assert journey.governance == {"allowed": 3, "delayed_quiet_hours": 1}


def test_quiet_hours_prefer_the_users_best_hour_that_morning() -> None:
    quiet = QuietHours(21, 8)
    night = at(-6 * HOUR)  # 02:00 UTC
    assert quiet.next_allowed(night, "UTC", lambda: 10) == at(2 * HOUR)
    assert quiet.next_allowed(night, "UTC", lambda: 23) == BASE_TS  # a quiet best hour: quiet ends instead
    assert quiet.next_allowed(night, "UTC", lambda: None) == BASE_TS
    assert quiet.next_allowed(at(13 * HOUR), "UTC", lambda: 10) == at(26 * HOUR)  # 21:00: next morning
    # From 01:00 CET across the spring change in Berlin (2027-03-28): 08:00 CEST is 06:00 UTC, not 07:00.
    assert quiet.next_allowed(1_806_192_000_000, "Europe/Berlin", lambda: None) == 1_806_213_600_000


def test_a_send_at_the_best_hour_waits_for_it_within_its_window_then_quiet_hours_and_caps_apply() -> None:
    # BASE_TS is 08:00 UTC, 09:00 in Berlin.
    policy = GovernancePolicy(cap_24h=1, cap_7d=10, quiet_hours=None)
    berlin = UserState("u1", traits={"email": "u1@example.com", "timezone": "Europe/Berlin"})
    within_a_day = JobRequest("winback", 1, "winback", "u1", "e1", BASE_TS, best_hour_within_ms=DAY)
    later_today = decide(berlin, within_a_day, policy, lambda: 19)
    assert (later_today.send_at_ms, later_today.at_best_hour, later_today.delayed) == (at(10 * HOUR), True, False)
    assert decide(berlin, within_a_day, policy, lambda: 9).send_at_ms == BASE_TS  # the best hour is now
    assert decide(berlin, within_a_day, policy, lambda: 7).send_at_ms == at(22 * HOUR)  # tomorrow morning
    # No prediction, or no best hour within a short window: at once.
    assert decide(berlin, within_a_day, policy, lambda: None).send_at_ms == BASE_TS
    two_hours = replace(within_a_day, best_hour_within_ms=2 * HOUR)
    assert not decide(berlin, two_hours, policy, lambda: 19).at_best_hour
    # Without `at: best_hour` the prediction is not even asked for.
    assert decide(berlin, replace(within_a_day, best_hour_within_ms=None), policy, _never_asked).send_at_ms == BASE_TS
    # A best hour inside quiet hours: quiet hours move it on, to their end (08:00 in Berlin).
    quiet = replace(policy, quiet_hours=QuietHours(21, 8))
    moved = decide(berlin, within_a_day, quiet, lambda: 23)
    assert (moved.send_at_ms, moved.at_best_hour, moved.delayed) == (at(23 * HOUR), True, True)
    # Caps count around the instant chosen: a send that evening caps one at 19:00, not one now.
    sent_tonight = replace(berlin, marketing_sends=[at(11 * HOUR)])
    assert decide(sent_tonight, within_a_day, policy, lambda: 19).outcome == "capped_24h"


def _never_asked() -> int | None:
    raise AssertionError("the best hour was asked for a send that does not wait for it")


@pytest.mark.parametrize("text", ["21", "a-b", "25-3", "8-8"])
def test_quiet_hours_setting_is_validated(text: str) -> None:
    with pytest.raises(ConfigError, match="TIDEMAIL_QUIET_HOURS"):
        QuietHours.parse(text)


# ---- experiments ------------------------------------------------------------------------


def test_held_out_users_get_nothing_but_their_purchases_count() -> None:
    journey = Journey()
    everyone_held = Experiment("welcome_preheader", "welcome", ("promise", "picks"), holdout=0.49)
    journey.processor.experiments = {"welcome_preheader": everyone_held}
    users = [f"u{n}" for n in range(40)]
    held = [u for u in users if everyone_held.is_held_out(u)]
    result = journey.send(*(signup(u) for u in users))
    assert 5 < len(held) < 35
    assert result.counts.governance["held_out"] == len(held)
    assert {job["user_id"] for job in result.outputs.jobs} == set(users) - set(held)
    bought = journey.send(event_doc("purchase", held[0], ts=at(HOUR)))
    assert bought.training.bandit_records == [BanditRecord("reward", "welcome_preheader", "holdout", "purchase", True)]


# ---- the language -----------------------------------------------------------------------

KNOWN = ({"welcome", "cart_reminder"}, {"exp"}, {"lapsed"})


@pytest.mark.parametrize(
    ("flows", "message"),
    [
        ("flows: {}", "top-level `flows:` list"),
        ("flows: [{name: a-b, trigger: {event: signup}, steps: [{send: welcome}]}]", "name like `cart_abandonment`"),
        ("flows: [{name: a, trigger: {event: login}, steps: [{send: welcome}]}]", "trigger.event must be one of"),
        ("flows: [{name: a, trigger: {segment: vip}, steps: [{send: welcome}]}]", "must name a defined segment"),
        ("flows: [{name: a, trigger: {segment: lapsed}, key: cart_id, steps: [{wait: 1d}]}]", "must be `user`"),
        ("flows: [{name: a, trigger: {event: signup}, steps: []}]", "non-empty list of steps"),
        ("flows: [{name: a, trigger: {event: signup}, steps: [{send: nope}]}]", "send must name a template"),
        ("flows: [{name: a, trigger: {event: signup}, steps: [{wait: week}]}]", "wait must be a duration like `7d`"),
        ("flows: [{name: a, trigger: {event: signup}, steps: [{wait: 1d, send: welcome}]}]", "exactly one of"),
        ("flows: [{name: a, trigger: {event: signup}, steps: [{send: welcome, next: nowhere}]}]", "must be a step id"),
        ("flows: [{name: a, trigger: {event: signup}, steps: [{send: welcome, experiment: x}]}]", "name an experiment"),
        ("flows: [{name: a, trigger: {event: signup}, reentry: sometimes, steps: [{wait: 1d}]}]", "`never`"),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{send: welcome, at: noon}]}]",
            r"\.at must be `best_hour`",
        ),
        ("flows: [{name: a, trigger: {event: signup}, steps: [{send: welcome, within: 1d}]}]", "needs `at: best_hour`"),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{send: welcome, at: best_hour, within: 3d}]}]",
            r"\.within must be from 1h to 48h",
        ),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{send: welcome, at: best_hour, within: soon}]}]",
            r"\.within must be a duration",
        ),
        ("flows: [{name: a, trigger: {event: signup}, category: promo, steps: [{wait: 1d}]}]", "category must be"),
        ("flows: [{name: a, trigger: {event: signup}, exit_on: [buy], steps: [{wait: 1d}]}]", "exit_on must be"),
        ("flows: [{name: a, trigger: {event: signup}, colour: red, steps: [{wait: 1d}]}]", "unknown field `colour`"),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{wait_for: {events: [click]}}]}]",
            "must have events and timeout",
        ),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{split: {if: {count: "
            "{event: click, within: 1d, value: 2}}}}]}]",
            "only segments keep",
        ),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{id: s, send: welcome}, "
            "{split: {if: {trait: {name: country, op: eq, value: GB}}, then: s}}]}]",
            "can reach itself without waiting",
        ),
        (
            "flows: [{name: a, trigger: {event: signup}, steps: [{wait: 1d}]},"
            " {name: a, trigger: {event: signup}, steps: [{wait: 1d}]}]",
            "flow `a` is defined more than once",
        ),
    ],
)
def test_invalid_flows_stop_start_up_with_a_precise_message(flows: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FlowBook.from_yaml(flows, "flows.yaml", *KNOWN)


def test_the_shipped_flows_load_and_an_unreadable_file_is_named(tmp_path: Path) -> None:
    book = FlowBook.load(Settings().flows_file, *_shipped_names())
    assert set(book.flows) == {"welcome", "cart_abandonment", "winback"}
    with pytest.raises(ConfigError, match="cannot read flow definitions"):
        FlowBook.load(tmp_path / "missing.yaml", *KNOWN)


def _shipped_names() -> tuple[set[str], set[str], set[str]]:
    templates = {"welcome", "welcome_browsed", "welcome_discover", "welcome_picks", "cart_reminder", "winback"}
    return templates, {"welcome_preheader", "winback_subject"}, {"lapsed"}


def test_the_benchmark_runs_the_shipped_flows_without_segment_triggers(tmp_path: Path) -> None:
    templates, experiments, _ = _shipped_names()
    book = FlowBook.load(flows_without_segment_triggers(tmp_path), templates, experiments, set())
    assert set(book.flows) == {"welcome", "cart_abandonment"}


PER_ORDER = """
flows:
  - name: review_request
    trigger: {event: purchase}
    key: order_id
    reentry: once_per_key
    steps: [{wait: 14d}, {send: welcome}]
"""


def test_a_user_has_at_most_ten_runs_of_a_flow_under_way() -> None:
    journey = Journey(PER_ORDER)
    journey.send(known("u1"))
    orders = [event_doc("purchase", "u1", event_id=f"p{n}", ts=at(n), order_id=f"o{n}") for n in range(12)]
    journey.send(*orders)
    [state] = journey.store.states.values()
    assert [run["key"] for run in state.flow_runs] == [f"o{n}" for n in range(2, 12)]
    assert journey.transitions["review_request:evicted"] == 2
    assert len(journey.advance(15 * DAY)) == 10
