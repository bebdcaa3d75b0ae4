"""Each step a due timer goes through, on a small example: its typed outputs, and the
state it hands on."""

from __future__ import annotations

from models.propensity import HORIZON_MS, Probe
from streams.core.clock_steps import (
    catch_up_segments,
    index_next_check,
    lateness,
    run_due_waits,
    take_timer,
)
from streams.core.event_steps import evaluate_segments, run_flows
from streams.core.flow_definitions import FlowBook
from streams.core.flow_engine import FlowEngine
from streams.core.segments import SegmentBook
from streams.core.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, make_event

DAY = 86_400_000
SEGMENTS = SegmentBook.from_yaml(
    """
segments:
  - name: clickers
    condition: {count: {event: click, within: 1d}}
  - name: quiet
    condition: {last: {event: any, older_than: 2d}}
""",
    "test",
)
ENGINE = FlowEngine(
    FlowBook.from_yaml(
        """
flows:
  - name: winback
    trigger: {segment: quiet}
    steps: [{send: welcome}]
  - name: welcome
    trigger: {event: signup}
    steps: [{wait: 1d}, {send: welcome}]
""",
        "test",
        {"welcome"},
        set(),
        {"quiet", "clickers"},
    ),
    lambda state, at_ms: {},
)


def clicked() -> UserState:
    """A user who clicked at BASE_TS: in `clickers` for a day, `quiet` two days on."""
    click = make_event("click")
    before = UserState("u1")
    state, _ = evaluate_segments(SEGMENTS, before, apply(before, click, StatePolicy()), click)
    return state


def test_a_timer_works_on_a_copy_and_forgets_the_index_entry_firing() -> None:
    stored = UserState("u1", indexed_due_ms=BASE_TS)
    state = take_timer(stored, BASE_TS)
    assert state is not stored and state.indexed_due_ms is None and stored.indexed_due_ms == BASE_TS
    assert take_timer(stored, BASE_TS + 1).indexed_due_ms == BASE_TS


def test_lateness_is_measured_from_the_earliest_instant_due() -> None:
    state = clicked()
    assert state.next_check_ms is not None
    assert lateness(ENGINE, state, state.next_check_ms - 1) is None
    assert lateness(ENGINE, state, state.next_check_ms + 5) == 5


def test_catching_up_flips_each_segment_at_its_own_instant_and_starts_flows() -> None:
    # The window counts in buckets: the click leaves it within a bucket after a day.
    click_expires = clicked().next_check_ms
    assert click_expires is not None and BASE_TS + DAY <= click_expires < BASE_TS + 2 * DAY
    state, caught_up = catch_up_segments(SEGMENTS, ENGINE, clicked(), BASE_TS + 3 * DAY)
    assert caught_up is not None
    assert [(t.at_ms, t.cause, t.entered, t.exited) for t in caught_up.transitions] == [
        (click_expires, "clock", [], ["clickers"]),
        (BASE_TS + 2 * DAY, "clock", ["quiet"], []),
    ]
    assert caught_up.flows is not None
    assert [(r.flow, r.at_ms, r.trigger_event_id) for r in caught_up.flows.requests] == [
        ("winback", BASE_TS + 2 * DAY, "clock")
    ]
    assert caught_up.flows.transitions == [("winback:entered", 1), ("winback:completed", 1)]
    assert state.segments == {"quiet": BASE_TS + 2 * DAY} and state.next_check_ms is None


def test_a_catch_up_that_starts_no_flow_asks_for_nothing() -> None:
    state, caught_up = catch_up_segments(SEGMENTS, ENGINE, clicked(), BASE_TS + DAY + DAY // 2)
    assert caught_up is not None and caught_up.flows is None
    assert [t.exited for t in caught_up.transitions] == [["clickers"]] and state.segments == {}


def test_nothing_due_is_no_catch_up() -> None:
    state = clicked()
    assert catch_up_segments(SEGMENTS, ENGINE, state, BASE_TS + 1) == (state, None)


def test_an_ended_wait_runs_out() -> None:
    signup = make_event("signup")
    state, _ = run_flows(ENGINE, apply(UserState("u1"), signup, StatePolicy()), signup, None)
    assert run_due_waits(ENGINE, state, BASE_TS + DAY - 1) == (state, None)
    state, out = run_due_waits(ENGINE, state, BASE_TS + DAY)
    assert out is not None
    assert [(r.flow, r.step, r.at_ms) for r in out.requests] == [("welcome", 2, BASE_TS + DAY)]
    assert out.transitions == [("welcome:completed", 1)] and state.flow_runs == []


def test_the_index_gets_an_entry_only_when_the_next_instant_moves_earlier() -> None:
    state = UserState("u1", next_check_ms=BASE_TS + DAY, propensity_probe=Probe(BASE_TS, [], []))
    state, due = index_next_check(ENGINE, state)
    assert due == BASE_TS + DAY and state.indexed_due_ms == BASE_TS + DAY
    state.next_check_ms = BASE_TS + 2 * DAY
    assert index_next_check(ENGINE, state) == (state, None)
    state.next_check_ms = None
    state.indexed_due_ms = None
    assert index_next_check(ENGINE, state) == (state, BASE_TS + HORIZON_MS)
    assert index_next_check(ENGINE, UserState("u2")) == (UserState("u2"), None)
