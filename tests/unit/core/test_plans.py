"""Generated evaluation: every kind of condition keeps the contract plans rely on, and a
plan checks only the segments the changed inputs can move, and those built on them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import segments as segments_module
from streams.core.codegen import Code
from streams.core.condition_parser import CONDITION_KINDS, parse_condition
from streams.core.conditions import Checked, EvalContext, Inputs
from streams.core.events import validate_event
from streams.core.segments import SegmentBook
from streams.core.state import StatePolicy, UserState, apply
from streams.core.windows import AggregateSpec
from tests.factories import BASE_TS, make_event
from tests.unit.core.test_rules import changes_of, run
from tests.unit.core.test_segment_property import HOUR, events, history_event

# One condition of each registered kind: a new kind needs a sample here to pass.
SAMPLES = {
    "all": "{all: [{cart: {idle_for: 1h}}, {count: {event: click, within: 1d, value: 2}}]}",
    "any": "{any: [{last: {event: email_open, within: 2d}}, {first_seen: {within: 1d}}]}",
    "not": "{not: {last: {event: any, within: 1d}}}",
    "trait": "{trait: {name: country, op: in, value: [GB, DE]}}",
    "count": "{count: {event: page_view, where: {category: books}, within: 2h, value: 2}}",
    "sum": "{sum: {event: purchase, field: total, within: 1d, op: lt, value: 100}}",
    "last": "{last: {event: cart_add, older_than: 3h}}",
    "first_seen": "{first_seen: {within: 6h}}",
    "cart": "{cart: {idle_for: 2h}}",
    "segment": "{segment: base}",
}
# Segments reject `score` (a score is not replayable); flows test it with scores in hand.
SCORE = "{score: {model: open_7d, op: gte, value: 0.5}}"


def test_every_kind_has_a_sample() -> None:
    assert {*SAMPLES, "score"} == set(CONDITION_KINDS)


@pytest.mark.parametrize("kind", SAMPLES)
@settings(max_examples=60, deadline=None)
@given(history=events, later_hours=st.integers(0, 24 * 3))
def test_a_plan_agrees_with_the_condition_it_inlines(
    kind: str, history: list[tuple[str, int, str, int]], later_hours: int
) -> None:
    segments = SegmentBook.from_yaml(
        f"""
        segments:
          - {{name: base, condition: {{last: {{event: click, within: 1d}}}}}}
          - {{name: sample, condition: {SAMPLES[kind]}}}
        """,
        "plans",
    )
    state = UserState("u1")
    docs = sorted((history_event(n, *entry) for n, entry in enumerate(history)), key=lambda d: d["timestamp"])
    for doc in docs:
        event = validate_event(doc, b"u1")
        state = apply(state, event, StatePolicy())
        state.windows, _ = segments.accumulate(state.windows, event)
    now = docs[-1]["timestamp"] + later_hours * HOUR
    evaluation = segments.on_clock(state, now)
    flips = []
    for segment in segments.segments:
        holds, flip = segment.condition.check(EvalContext(state, now, evaluation.segments))
        assert flip is None or flip > now, "a flip must lie ahead: plans take it as the next check"
        assert (segment.name in evaluation.segments) == holds
        flips += [] if flip is None else [flip]
    assert evaluation.next_check_ms == min(flips, default=None)


@pytest.mark.parametrize(("score", "holds"), [(None, False), (0.2, False), (0.5, True)])
def test_a_score_condition_reads_the_scores_it_is_given(score: float | None, holds: bool) -> None:
    condition = parse_condition(yaml.safe_load(SCORE), "test")
    scores = {} if score is None else {"open_7d": score}
    assert condition.check(EvalContext(UserState("u1"), BASE_TS, set(), scores)) == (holds, None)


@dataclass(frozen=True, eq=False)
class Spied(Checked):
    """A condition that records each evaluation of the one it wraps."""

    name: str
    part: Any
    checked: list[str]

    def emit(self, code: Code, holds: str, flip: str) -> None:
        code.write(f"{code.constant(self.checked.append)}({self.name!r})")
        self.part.emit(code, holds, flip)

    def inputs(self) -> Inputs:
        inputs: Inputs = self.part.inputs()
        return inputs

    def aggregates(self) -> tuple[tuple[AggregateSpec, int], ...]:
        aggregates: tuple[tuple[AggregateSpec, int], ...] = self.part.aggregates()
        return aggregates


def spied(text: str, checked: list[str]) -> SegmentBook:
    """These definitions, recording in `checked` the name of each segment evaluated."""
    segments = SegmentBook.from_yaml(text, "segments.yaml")
    return SegmentBook(
        [replace(s, condition=Spied(s.name, s.condition, checked)) for s in segments.segments], segments.version
    )


def test_an_event_that_cannot_move_a_segment_skips_its_evaluation() -> None:
    checked: list[str] = []
    segments = spied(
        """
        segments:
          - {name: active, condition: {last: {event: any, within: 7d}}}
          - {name: dormant, condition: {not: {last: {event: any, within: 7d}}}}
        """,
        checked,
    )
    event = make_event("page_view")
    state = run(event)
    state.segments = {"active": BASE_TS}
    evaluation = segments.after_events(state, {"page_view", "*"}, BASE_TS, event.event_id)
    assert checked == [] and evaluation.transitions is None
    state.segments = {"dormant": BASE_TS}
    evaluation = segments.after_events(state, {"page_view", "*"}, BASE_TS, event.event_id)
    assert checked == ["active", "dormant"]
    assert changes_of(evaluation) == [("active", "entered"), ("dormant", "exited")]


def test_a_segment_built_on_another_is_checked_when_that_one_moves() -> None:
    checked: list[str] = []
    segments = spied(
        """
        segments:
          - {name: shopper, condition: {count: {event: purchase, within: 7d}}}
          - {name: loyal, condition: {all: [{segment: shopper}, {trait: {name: vip, op: eq, value: true}}]}}
          - {name: gone_quiet, condition: {all: [{segment: shopper}, {not: {last: {event: any, within: 1d}}}]}}
        """,
        checked,
    )
    state = run(make_event("profile_update", traits={"vip": True}))
    for n in range(2):
        event = make_event("purchase", event_id=f"p{n}")
        state = apply(state, event, StatePolicy())
        state.windows, touched = segments.accumulate(state.windows, event)
        evaluation = segments.after_events(state, {"purchase", "*", *touched}, BASE_TS, event.event_id)
        state.segments = evaluation.segments
        if n == 0:
            # `gone_quiet` is also an input of `*`, which can only move it out: checked
            # here because `shopper` moved, not because the event could move it.
            assert checked == ["shopper", "loyal", "gone_quiet"]
            assert changes_of(evaluation) == [("shopper", "entered"), ("loyal", "entered")]
        else:
            # A second purchase cannot move a shopper out, so nothing built on it is checked.
            assert checked == ["shopper", "loyal", "gone_quiet"] and evaluation.transitions is None


def test_segments_an_event_can_only_leave_are_checked_for_their_members_only() -> None:
    checked: list[str] = []
    quiet = "  - {{name: quiet_{0}d, condition: {{not: {{last: {{event: any, within: {0}d}}}}}}}}\n"
    segments = spied("segments:\n" + "".join(quiet.format(days) for days in (1, 7, 30)), checked)
    state = run(make_event("page_view"))
    assert segments.after_events(state, {"page_view", "*"}, BASE_TS, "e").transitions is None
    assert checked == []
    state.segments = {"quiet_30d": BASE_TS - 40 * 24 * HOUR}
    evaluation = segments.after_events(state, {"page_view", "*"}, BASE_TS, "e")
    assert checked == ["quiet_30d"]
    assert changes_of(evaluation) == [("quiet_30d", "exited")]


def test_past_the_cap_on_compiled_plans_every_segment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments_module, "MAX_CACHED", 1)
    checked: list[str] = []
    segments = spied(
        """
        segments:
          - {name: viewer, condition: {last: {event: page_view, within: 7d}}}
          - {name: clicker, condition: {last: {event: click, within: 7d}}}
        """,
        checked,
    )
    state = run(make_event("page_view"))
    segments.after_events(state, {"page_view", "*"}, BASE_TS, "a")
    assert checked == ["viewer"]
    evaluation = segments.after_events(state, {"click", "*"}, BASE_TS, "b")
    assert checked == ["viewer", "viewer", "clicker"]
    assert changes_of(evaluation) == [("viewer", "entered")]
