"""Each step an event goes through after `apply`, on a small example: its typed outputs,
and the state it hands on."""

from __future__ import annotations

import zlib
from typing import Any

from models.bandits import BanditRecord
from models.interactions import Interaction, Product
from models.propensity import FEATURES, HORIZON_MS, Probe, probe_features
from models.reco import DEFAULT_WEIGHTS, ItemModel
from streams.core.event_steps import (
    NEW_QUALITY_SAMPLE,
    QUALITY_SAMPLE,
    QualitySample,
    advance_probe,
    attribute_rewards,
    close_due_probe,
    evaluate_segments,
    learn_interactions,
    note_engagement,
    run_flows,
)
from streams.core.events import Event
from streams.core.flow_definitions import FlowBook
from streams.core.flow_engine import FlowEngine, JobRequest
from streams.core.segments import SegmentBook
from streams.core.state import ExperimentSend, StatePolicy, UserState, apply
from tests.factories import BASE_TS, make_event

DAY = 86_400_000
SEGMENTS = SegmentBook.from_yaml(
    """
segments:
  - name: clickers
    condition: {count: {event: click, within: 7d}}
""",
    "test",
)
FLOWS = FlowBook.from_yaml(
    """
flows:
  - name: welcome
    trigger: {event: signup}
    steps: [{send: welcome}, {wait: 1d}, {send: welcome}]
  - name: clicked
    trigger: {segment: clickers}
    steps: [{send: welcome}]
""",
    "test",
    {"welcome"},
    set(),
    {"clickers"},
)


def applied(before: UserState, event: Event) -> UserState:
    return apply(before, event, StatePolicy())


def sampled_click(sample: int = QUALITY_SAMPLE, **kwargs: Any) -> Event:
    """A click whose event id falls in the recommender's quality sample (one in `sample`)."""
    n = next(n for n in range(1_000) if zlib.crc32(f"click-{n}".encode()) % sample == 0)
    return make_event("click", event_id=f"click-{n}", **kwargs)


def test_interactions_are_learned_and_a_sampled_click_is_predicted_first() -> None:
    products = {sku: Product(sku, sku, "outdoor", 1.0) for sku in ("OUT-001", "RUN-002")}
    model = ItemModel([("OUT-001", 2.0, BASE_TS), ("RUN-002", 1.0, BASE_TS)], {}, products, 0)
    before = UserState("u1")
    event = sampled_click(NEW_QUALITY_SAMPLE, sku="OUT-001")
    state, learned = learn_interactions(before, applied(before, event), event, DEFAULT_WEIGHTS, model)
    assert learned is not None
    [(interaction, product)] = learned.interactions
    assert interaction == Interaction("u1", "OUT-001", DEFAULT_WEIGHTS["click"], BASE_TS) and product is None
    # A click, and the user's first touch of the product: both measures count it; with no
    # history, every recommender offers the popular products.
    assert learned.quality == QualitySample(1, 1, 1, 1, 1, 1, 1)
    # In the sample of clicks but not in the rarer one of first touches: asked about the click alone.
    n = next(n for n in range(1_000) if zlib.crc32(f"c{n}".encode()) % NEW_QUALITY_SAMPLE == QUALITY_SAMPLE)
    event = make_event("click", event_id=f"c{n}", sku="OUT-001")
    _, learned = learn_interactions(before, applied(before, event), event, DEFAULT_WEIGHTS, model)
    assert learned is not None and learned.quality == QualitySample(1, 1, 1)
    assert state.recent_interactions and before.recent_interactions == []


def test_events_without_feedback_teach_nothing() -> None:
    before = UserState("u1")
    event = make_event("signup")
    state = applied(before, event)
    assert learn_interactions(before, state, event, DEFAULT_WEIGHTS, ItemModel.empty()) == (state, None)


def test_an_open_counts_towards_its_local_hour_of_the_week() -> None:
    event = make_event("email_open", context={"timezone": "Europe/Berlin"})
    state, hour = note_engagement(applied(UserState("u1"), event), event)
    # BASE_TS is a Saturday, 08:00 UTC: 09:00 in Berlin.
    assert hour == 5 * 24 + 9
    assert state.engagement_hours == {str(hour): 1.0}


def test_an_open_rewards_the_job_it_names_once_as_first() -> None:
    before = UserState("u1", experiment_jobs=[ExperimentSend("j1", "exp", "a", BASE_TS - DAY, False)])
    event = make_event("email_open", job_id="j1")
    state, rewards = attribute_rewards(applied(before, event), event)
    assert rewards == [BanditRecord("reward", "exp", "a", "email_open", True)]
    assert state.experiment_jobs == [ExperimentSend("j1", "exp", "a", BASE_TS - DAY, True)]
    again = make_event("email_click", event_id="click-again", job_id="j1")
    _, rewards = attribute_rewards(state, again)
    assert rewards == [BanditRecord("reward", "exp", "a", "email_click", False)]


def test_a_purchase_rewards_the_latest_job_sent_within_a_week() -> None:
    sends = [
        ExperimentSend("old", "exp", "a", BASE_TS - 8 * DAY, False),
        ExperimentSend("j1", "exp", "a", BASE_TS - 2 * DAY, False),
        ExperimentSend("j2", "exp", "b", BASE_TS - DAY, False),
    ]
    event = make_event("purchase")
    state, rewards = attribute_rewards(applied(UserState("u1", experiment_jobs=sends), event), event)
    assert rewards == [BanditRecord("reward", "exp", "b", "purchase", True)]
    assert [send.rewarded for send in state.experiment_jobs] == [False, False, True]


def test_an_outcome_at_the_end_of_a_probe_counts_and_the_probe_becomes_an_example() -> None:
    probe = Probe(BASE_TS - HORIZON_MS, [0.5] * 18, [])
    before = UserState("u1", propensity_probe=probe)
    event = make_event("email_open")
    state, example = advance_probe(before, applied(before, event), event)
    assert example is not None
    features, outcomes = example
    assert outcomes == ["open"] and set(features.values()) == {0.5}
    assert state.propensity_probe is not None and state.propensity_probe.at == BASE_TS


def test_a_probe_within_its_week_stays_open() -> None:
    probe = Probe(BASE_TS - DAY, [0.0] * len(FEATURES), [])
    state = UserState("u1", propensity_probe=probe)
    assert close_due_probe(state, BASE_TS) == (state, None)
    state, example = close_due_probe(state, BASE_TS - DAY + HORIZON_MS)
    assert example == (dict.fromkeys(FEATURES, 0.0), []) and state.propensity_probe is None


def test_on_the_clock_probes_follow_one_another_while_the_user_was_seen_within_30_days() -> None:
    ended = BASE_TS + HORIZON_MS
    recent = UserState("u1", last_seen_ms=ended - 29 * DAY, propensity_probe=Probe(BASE_TS, [1.0] * len(FEATURES), []))
    state, example = close_due_probe(recent.copy(), ended + DAY)
    assert example is not None and state.propensity_probe is not None
    assert state.propensity_probe.at == ended and len(state.propensity_probe.x) == len(FEATURES)
    assert state.propensity_probe.x[FEATURES.index("days_since_seen")] == 29.0
    lapsed = UserState("u1", last_seen_ms=ended - 30 * DAY, propensity_probe=recent.propensity_probe)
    state, example = close_due_probe(lapsed, ended + DAY)
    assert example is not None and state.propensity_probe is None


def test_a_probe_of_an_earlier_release_names_the_features_it_has() -> None:
    older = Probe(BASE_TS - HORIZON_MS, [2.0] * 18, ["purchase"])
    features = probe_features(older)
    assert list(features) == list(FEATURES[:18]) and set(features.values()) == {2.0}


def test_an_event_that_moves_a_segment_publishes_the_transition() -> None:
    before = UserState("u1")
    click = make_event("click")
    state, moved = evaluate_segments(SEGMENTS, before, applied(before, click), click)
    assert moved is not None
    assert (moved.entered, moved.exited, moved.at_ms, moved.cause) == (["clickers"], [], BASE_TS, click.event_id)
    assert state.segments == {"clickers": BASE_TS} and state.next_check_ms is not None
    view = make_event("page_view")
    state, moved = evaluate_segments(SEGMENTS, state, applied(state, view), view)
    assert moved is None and state.segments == {"clickers": BASE_TS}


def test_flows_start_from_a_trigger_event_and_from_an_entered_segment() -> None:
    engine = FlowEngine(FLOWS, lambda state, at_ms: {})
    signup = make_event("signup")
    state, out = run_flows(engine, applied(UserState("u1"), signup), signup, None)
    assert out is not None
    assert [(r.flow, r.step, r.trigger_key) for r in out.requests] == [("welcome", 1, "u1")]
    assert out.transitions == [("welcome:entered", 1)]
    assert [(run["flow"], run["due"]) for run in state.flow_runs] == [("welcome", BASE_TS + DAY)]
    click = make_event("click")
    state, moved = evaluate_segments(SEGMENTS, state, applied(state, click), click)
    _, out = run_flows(engine, state, click, moved)
    assert out is not None and [r.flow for r in out.requests] == ["clicked"]
    assert out.transitions == [("clicked:entered", 1), ("clicked:completed", 1)]


def test_an_event_no_flow_concerns_runs_none() -> None:
    engine = FlowEngine(FLOWS, lambda state, at_ms: {})
    view = make_event("page_view")
    state = applied(UserState("u1"), view)
    assert run_flows(engine, state, view, None) == (state, None)


def test_a_wait_that_ended_before_the_event_runs_out_at_its_own_instant() -> None:
    engine = FlowEngine(FLOWS, lambda state, at_ms: {})
    signup = make_event("signup", ts=BASE_TS - 2 * DAY)
    state, _ = run_flows(engine, applied(UserState("u1"), signup), signup, None)
    view = make_event("page_view")
    state, out = run_flows(engine, applied(state, view), view, None)
    assert out is not None
    assert out.requests == [JobRequest("welcome", 3, "welcome", "u1", signup.event_id, BASE_TS - DAY)]
    assert out.transitions == [("welcome:completed", 1)] and state.flow_runs == []
