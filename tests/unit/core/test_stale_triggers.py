"""Triggers older than the maximum trigger age: a backfill updates state and segments and
sends nothing; fresh events and the timers of runs they started are untouched."""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import Settings
from streams.core.errors import ConfigError
from streams.core.flow_engine import job_id
from streams.core.governance import GovernancePolicy
from tests.factories import BASE_TS, event_doc, item
from tests.unit.core.test_flows import DAY, HOUR, MINUTE, Journey

AGED = GovernancePolicy(cap_24h=100, cap_7d=100, quiet_hours=None, max_trigger_age_ms=DAY)
# The worker's clock when the backfill arrives: a week after its first event.
NOW = BASE_TS + 7 * DAY + 2 * HOUR
USERS = [f"u{n}" for n in range(6)]


def week_of(user: str) -> list[dict[str, Any]]:
    """A user's week, each event a day after the last: the newest is 26 hours old at NOW."""
    signup = event_doc("signup", user, event_id=f"signup-{user}", ts=BASE_TS)
    signup["context"] = {"email": f"{user}@example.com", "first_name": "Ann"}
    views = [
        event_doc("page_view", user, event_id=f"view-{user}-{day}", ts=BASE_TS + day * DAY, category="outdoor")
        for day in (1, 2, 3)
    ]
    cart = event_doc("cart_add", user, event_id=f"cart-{user}", ts=BASE_TS + 4 * DAY, cart_id=f"c-{user}", item=item())
    ads = event_doc("click", user, event_id=f"click-{user}", ts=BASE_TS + 6 * DAY)
    return [signup, *views, cart, ads]


def test_a_backfilled_week_updates_state_and_segments_and_sends_nothing() -> None:
    journey = Journey(governance=AGED)
    journey.now = NOW
    result = journey.send(*(doc for user in USERS for doc in week_of(user)))

    assert journey.jobs == []
    # Each user's signup and cart would each have started a run.
    assert journey.governance == {"stale_trigger": 2 * len(USERS)}
    assert journey.transitions == {
        "welcome:stale_trigger": len(USERS),
        "cart_abandonment:stale_trigger": len(USERS),
    }
    state = journey.store.states[(0, "u3")]
    assert state.counts == {"signup": 1, "page_view": 3, "cart_add": 1, "click": 1}
    assert state.cart is not None and list(state.cart["items"]) == ["OUT-001"]
    assert {"new_visitors", "outdoor_fans"} <= state.segments.keys()
    entered = {name for _, moved in result.outputs.segment_transitions for name in moved.entered}
    assert {"new_visitors", "outdoor_fans", "cart_abandoners"} <= entered
    # No run started, so none holds a timer, and none blocks a later fresh trigger.
    assert (state.flow_runs, state.flows_entered, state.flow_keys) == ([], {}, {})

    # The segment checks the old events scheduled fall due at once, and send nothing either.
    assert journey.advance(MINUTE) == []
    # A segment entry still to come from the backfilled state starts flows when it comes:
    # thirty days after their last event, in 2027, the users lapse and get the win-back.
    winbacks = journey.advance(29 * DAY)
    assert sorted((job["user_id"], job["template"], job["send_at"]) for job in winbacks) == [
        (user, "winback", "2027-01-03T08:00:00.000Z") for user in USERS
    ]


def test_fresh_events_after_a_backfill_still_send_and_their_timers_fire() -> None:
    journey = Journey(governance=AGED)
    journey.now = NOW
    journey.send(*week_of("u1"))
    newcomer = event_doc("signup", "u9", event_id="signup-u9", ts=NOW - HOUR)
    newcomer["context"] = {"email": "u9@example.com"}
    # The same cart again, now: its run starts, as the stale add did not count as one.
    fresh_cart = event_doc("cart_add", "u1", event_id="cart-u1-again", ts=NOW, cart_id="c-u1", item=item())
    journey.send(newcomer, fresh_cart)
    assert [(job["user_id"], job["template"]) for job in journey.jobs] == [("u9", "welcome")]
    [reminder] = journey.advance(HOUR + MINUTE)
    assert reminder["job_id"] == job_id("cart_abandonment", 3, "u1", "c-u1")
    # Two days on, the welcome series' second email falls due on the timer: the run's trigger is
    # by then two days old, and its waits are not triggers.
    later = journey.advance(2 * DAY)
    assert ("u9", "welcome_discover") in [(job["user_id"], job["template"]) for job in later]
    assert journey.governance["stale_trigger"] == 2


FOLLOW_UP = """
flows:
  - name: follow_up
    trigger: {event: signup}
    exit_on: [purchase]
    steps:
      - wait_for: {events: [page_view], timeout: 2d, on_event: thanks, on_timeout: nudge}
      - id: thanks
        send: welcome
        next: end
      - id: nudge
        send: welcome_discover
"""


def signed_up(user: str, ts: int) -> dict[str, Any]:
    doc = event_doc("signup", user, event_id=f"signup-{user}", ts=ts)
    doc["context"] = {"email": f"{user}@example.com"}
    return doc


def test_a_stale_awaited_event_ends_the_run_and_a_stale_goal_still_ends_one() -> None:
    journey = Journey(FOLLOW_UP, AGED)
    journey.now = NOW
    journey.send(*(signed_up(user, NOW - HOUR) for user in ("late", "buyer", "fresh")))
    journey.send(
        # Arriving now, from two days ago: the page view happened, so the nudge for not viewing
        # is wrong, and thanking for it now is what the limit forbids.
        event_doc("page_view", "late", event_id="old-view", ts=NOW - 2 * DAY),
        event_doc("purchase", "buyer", event_id="old-buy", ts=NOW - 2 * DAY),
        event_doc("page_view", "fresh", event_id="new-view", ts=NOW),
    )
    assert [(job["user_id"], job["template"]) for job in journey.jobs] == [("fresh", "welcome")]
    assert journey.advance(3 * DAY) == []
    assert journey.transitions["follow_up:stale_trigger"] == 1
    assert journey.transitions["follow_up:goal"] == 1
    assert journey.governance == {"allowed": 1, "stale_trigger": 1}
    assert all(not state.flow_runs for state in journey.store.states.values())


def test_without_a_limit_the_backfill_sends_the_whole_week_at_once() -> None:
    journey = Journey()
    journey.now = NOW
    journey.send(*week_of("u1"))
    # What the limit prevents: every email of the week, sent now.
    assert [job["template"] for job in journey.jobs] == [
        "welcome",
        "welcome_browsed",
        "cart_reminder",
        "welcome_picks",
        "cart_reminder",
    ]
    assert "stale_trigger" not in journey.governance


@pytest.mark.parametrize(("text", "millis"), [("24h", DAY), ("7d", 7 * DAY), ("90m", 90 * MINUTE), ("", None)])
def test_the_setting_reads_a_duration_or_empty_for_no_limit(text: str, millis: int | None) -> None:
    assert Settings.from_env({"TIDEMAIL_MAX_TRIGGER_AGE": text}).governance.max_trigger_age_ms == millis


def test_the_default_limit_is_a_day_and_a_bad_value_names_the_variable() -> None:
    assert Settings().governance.max_trigger_age_ms == DAY
    with pytest.raises(ConfigError, match=r"TIDEMAIL_MAX_TRIGGER_AGE must be a duration like `7d`.*'yesterday'"):
        Settings.from_env({"TIDEMAIL_MAX_TRIGGER_AGE": "yesterday"})
