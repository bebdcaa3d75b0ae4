from __future__ import annotations

from typing import Any

import pytest
import yaml

from streams.core.condition_parser import parse_condition
from streams.core.conditions import EvalContext, Moves
from streams.core.errors import ConfigError
from streams.core.segments import Evaluation, SegmentBook, Transitions
from streams.core.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, item, make_event

HOUR = 3_600_000
DAY = 24 * HOUR


def cond(text: str) -> Any:
    return parse_condition(yaml.safe_load(text), "test")


def ctx(state: UserState, now: int = BASE_TS, member_of: tuple[str, ...] = ()) -> EvalContext:
    return EvalContext(state, now, set(member_of))


def book(text: str) -> SegmentBook:
    return SegmentBook.from_yaml(text, "segments.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{last: {event: email_open, within: week}}",
            "test.last.within must be a duration like `7d`, `12h` or `30m`; got 'week'",
        ),
        ("{last: {event: teleport, within: 7d}}", "test.last.event must be one of signup"),
        ("{last: {event: click}}", "needs exactly one of `within`, `older_than`, `never`"),
        ("{count: {event: purchase}}", "test.count needs `within`"),
        ("{count: {event: purchase, within: 7d, op: about, value: 1}}", "test.count.op must be one of eq, ne, gt"),
        ("{count: {event: purchase, within: 7d, value: lots}}", "test.count.value must be a number; got 'lots'"),
        ("{count: {event: purchase, within: 7d, colour: red}}", "test.count: unknown field `colour`"),
        ("{sum: {event: purchase, within: 7d}}", "test.sum needs `field`"),
        ("{trait: {name: country, op: in, value: GB}}", "test.trait.value must be a list for `in`; got 'GB'"),
        ("{trait: {name: country, op: eq}}", "test.trait needs `value` for `eq`"),
        ("{trait: {name: country, op: like, value: G}}", "test.trait.op must be one of"),
        ("{all: []}", "test.all must be a non-empty list of conditions"),
        ("{any: [{teleport: {}}]}", r"test.any\[0\]: unknown condition `teleport`"),
        ("{count: {}, last: {}}", "must be a mapping with exactly one of"),
        ("{cart: {idle_for: 0m}}", "test.cart.idle_for must be a duration"),
        ("{segment: ''}", "test.segment must name another segment"),
    ],
)
def test_parse_errors_name_field_and_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cond(text)


def test_file_level_errors() -> None:
    with pytest.raises(ConfigError, match=r"segments\.yaml: segment `a`: condition: unknown condition `nope`"):
        book("segments: [{name: a, condition: {nope: 1}}]")
    with pytest.raises(ConfigError, match="segment `a` is defined more than once"):
        book("segments: [{name: a, condition: {cart: {}}}, {name: a, condition: {cart: {}}}]")
    with pytest.raises(ConfigError, match="segment `a` refers to unknown segment `b`"):
        book("segments: [{name: a, condition: {segment: b}}]")
    with pytest.raises(ConfigError, match="segment `a` depends on itself: a -> b -> a"):
        book("segments: [{name: a, condition: {segment: b}}, {name: b, condition: {segment: a}}]")
    with pytest.raises(ConfigError, match="not valid YAML"):
        book("segments: [")
    with pytest.raises(ConfigError, match="must have a top-level `segments:` list"):
        book("segments: {a: 1}")
    with pytest.raises(ConfigError, match=r"segments\[0\].name must be letters"):
        book("segments: [{name: 'a b', condition: {cart: {}}}]")
    with pytest.raises(ConfigError, match="segment `a` needs a `condition`"):
        book("segments: [{name: a}]")


def run(*events: Any) -> UserState:
    state = UserState("u1")
    for event in events:
        state = apply(state, event, StatePolicy())
    return state


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "GB", True),
        ("ne", "GB", False),
        ("in", ["DE", "GB"], True),
        ("not_in", ["GB"], False),
        ("exists", None, True),
    ],
)
def test_trait_operators(op: str, value: Any, expected: bool) -> None:
    state = run(make_event("signup", context={"country": "GB"}))
    condition = parse_condition({"trait": {"name": "country", "op": op, **({"value": value} if value else {})}}, "t")
    assert condition.holds(ctx(state)) is expected


def test_numeric_trait_comparisons_and_type_mismatch() -> None:
    state = run(make_event("profile_update", traits={"age": 51, "nickname": "al"}))
    assert cond("{trait: {name: age, op: gt, value: 50}}").holds(ctx(state))
    assert not cond("{trait: {name: age, op: lte, value: 50}}").holds(ctx(state))
    assert not cond("{trait: {name: nickname, op: gt, value: 5}}").holds(ctx(state))
    assert cond("{trait: {name: shoe_size, op: missing}}").holds(ctx(state))


def test_recency_boundaries() -> None:
    state = run(make_event("email_open"))
    within = cond("{last: {event: email_open, within: 7d}}")
    older = cond("{last: {event: email_open, older_than: 7d}}")
    never = cond("{last: {event: purchase, never: true}}")
    assert within.holds(ctx(state, BASE_TS + 7 * DAY - 1)) and not within.holds(ctx(state, BASE_TS + 7 * DAY))
    assert not older.holds(ctx(state, BASE_TS + 7 * DAY - 1)) and older.holds(ctx(state, BASE_TS + 7 * DAY))
    assert within.next_change(ctx(state)) == BASE_TS + 7 * DAY
    assert never.holds(ctx(state)) and never.next_change(ctx(state)) is None


def test_cart_idle_and_first_seen() -> None:
    state = run(make_event("cart_add"))
    idle = cond("{cart: {idle_for: 1h}}")
    assert not idle.holds(ctx(state, BASE_TS + HOUR - 1)) and idle.holds(ctx(state, BASE_TS + HOUR))
    assert idle.next_change(ctx(state)) == BASE_TS + HOUR
    bought = run(make_event("cart_add"), make_event("purchase"))
    assert not idle.holds(ctx(bought, BASE_TS + 2 * HOUR))
    new = cond("{first_seen: {within: 7d}}")
    assert new.holds(ctx(state, BASE_TS + 7 * DAY - 1)) and not new.holds(ctx(state, BASE_TS + 7 * DAY))


def test_window_counts_use_buckets_and_expire() -> None:
    segments = book(
        "segments: [{name: fans, condition: "
        "{count: {event: page_view, where: {category: outdoor}, within: 1d, value: 2}}}]"
    )
    state = UserState("u1")
    for n, (category, offset) in enumerate([("outdoor", 0), ("books", 10), ("outdoor", HOUR)]):
        event = make_event("page_view", event_id=f"v{n}", ts=BASE_TS + offset, category=category)
        state = apply(state, event, StatePolicy())
        state.windows, _ = segments.accumulate(state.windows, event)
    condition = segments.by_name["fans"].condition
    assert condition.holds(ctx(state, BASE_TS + HOUR))
    # The first view's 1h bucket leaves the window one day after the bucket ends.
    assert condition.next_change(ctx(state, BASE_TS + HOUR)) == BASE_TS + HOUR + DAY
    assert condition.holds(ctx(state, BASE_TS + HOUR + DAY - 1))
    assert not condition.holds(ctx(state, BASE_TS + HOUR + DAY))


def test_sum_reads_nested_numeric_properties() -> None:
    segments = book(
        "segments: [{name: big, condition: {sum: {event: cart_add, field: item.price, within: 7d, value: 100}}}]"
    )
    state = UserState("u1")
    for n, price in enumerate([60.0, 50.0]):
        event = make_event("cart_add", event_id=f"c{n}", item=item(sku=f"s{n}", price=price))
        state = apply(state, event, StatePolicy())
        state.windows, _ = segments.accumulate(state.windows, event)
    assert segments.by_name["big"].condition.holds(ctx(state))


def test_only_affected_segments_are_evaluated_and_dependents_follow() -> None:
    segments = book(
        """
        segments:
          - {name: shopper, condition: {count: {event: purchase, within: 7d}}}
          - {name: loyal, condition: {all: [{segment: shopper}, {trait: {name: vip, op: eq, value: true}}]}}
          - {name: viewer, condition: {last: {event: page_view, within: 7d}}}
        """
    )
    before = run(make_event("profile_update", traits={"vip": True}))
    event = make_event("purchase")
    state = apply(before, event, StatePolicy())
    state.windows, touched = segments.accumulate(state.windows, event)
    changed = segments.inputs_changed_by(before, state, event, touched)
    evaluation = segments.after_events(state, changed, BASE_TS, event.event_id)
    assert changes_of(evaluation) == [("shopper", "entered"), ("loyal", "entered")]
    assert evaluation.transitions is not None and evaluation.transitions.cause == event.event_id
    assert set(evaluation.segments) == {"shopper", "loyal"}


def test_clock_evaluation_flips_without_an_event() -> None:
    segments = book("segments: [{name: abandoner, condition: {cart: {idle_for: 1h}}}]")
    state = run(make_event("cart_add"))
    first = segments.after_events(state, {"cart_add"}, BASE_TS, "add")
    assert first.transitions is None and first.next_check_ms == BASE_TS + HOUR
    state.segments, state.next_check_ms = first.segments, first.next_check_ms
    later = segments.on_clock(state, BASE_TS + HOUR)
    assert changes_of(later) == [("abandoner", "entered")]
    assert later.transitions is not None and (later.transitions.cause, later.transitions.at_ms) == (
        "clock",
        BASE_TS + HOUR,
    )
    assert later.next_check_ms is None


def test_change_ids_are_deterministic() -> None:
    segments = book("segments: [{name: s, condition: {cart: {}}}]")
    state = run(make_event("cart_add"))
    one = segments.after_events(state, {"cart_add"}, BASE_TS, "add").transitions
    two = segments.after_events(state, {"cart_add"}, BASE_TS, "add").transitions
    assert one is not None and two is not None
    assert one.change_ids() == two.change_ids()


def test_entering_again_on_the_clock_is_a_new_change() -> None:
    # Lapsing, coming back and lapsing again: two entries with the same cause, `clock`.
    first = Transitions("u1", BASE_TS, "clock", "v1", entered=["lapsed"])
    again = Transitions("u1", BASE_TS + 40 * DAY, "clock", "v1", entered=["lapsed"])
    assert first.change_ids() != again.change_ids()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{last: {event: click, within: 7d}}", {"click": Moves.RISES}),
        ("{last: {event: click, older_than: 7d}}", {"click": Moves.FALLS}),
        ("{not: {last: {event: any, within: 30d}}}", {"*": Moves.FALLS}),
        ("{count: {event: click, within: 7d, value: 2}}", {"count|click||21600000": Moves.RISES}),
        ("{count: {event: click, within: 7d, op: lt, value: 2}}", {"count|click||21600000": Moves.FALLS}),
        ("{count: {event: click, within: 7d, op: eq, value: 2}}", {"count|click||21600000": Moves.EITHER}),
        # A sum may add a negative amount.
        (
            "{sum: {event: purchase, field: total, within: 7d, value: 9}}",
            {"sum:total|purchase||21600000": Moves.EITHER},
        ),
        (
            "{all: [{last: {event: click, within: 7d}}, {not: {last: {event: click, within: 1d}}}]}",
            {"click": Moves.EITHER},
        ),
        (
            "{any: [{last: {event: click, within: 7d}}, {trait: {name: vip, op: exists}}]}",
            {"click": Moves.RISES, "traits": Moves.EITHER},
        ),
    ],
)
def test_each_input_knows_which_way_it_can_move_a_condition(text: str, expected: dict[str, Moves]) -> None:
    assert dict(cond(text).inputs()) == expected


def test_filtered_aggregates_are_found_by_property_value() -> None:
    segments = book(
        """
        segments:
          - {name: outdoor, condition: {count: {event: page_view, where: {category: outdoor}, within: 1d}}}
          - {name: books, condition: {count: {event: page_view, where: {category: books, sku: B1}, within: 1d}}}
          - {name: viewer, condition: {count: {event: page_view, within: 1d}}}
          - {name: tagged, condition: {count: {event: page_view, where: {tag: x}, within: 1d}}}
        """
    )
    _, touched = segments.accumulate({}, make_event("page_view", category="books", sku="B2"))
    assert set(touched) == {"count|page_view||3600000"}
    _, touched = segments.accumulate({}, make_event("page_view", category="books", sku="B1"))
    assert set(touched) == {"count|page_view|category=books,sku=B1|3600000", "count|page_view||3600000"}
    _, touched = segments.accumulate({}, make_event("page_view", category="books", tag=["x"]))
    assert set(touched) == {"count|page_view||3600000"}


def changes_of(evaluation: Evaluation) -> list[tuple[str, str]]:
    moved = evaluation.transitions
    return [] if moved is None else [(s, change) for change, segments in moved.by_change() for s in segments]


def test_a_segment_removed_from_the_definitions_is_exited_at_the_next_evaluation() -> None:
    before = book(
        """
        segments:
          - {name: viewer, condition: {last: {event: page_view, within: 7d}}}
          - {name: retired, condition: {last: {event: page_view, within: 30d}}}
        """
    )
    state = run(make_event("page_view", event_id="v1"))
    first = before.after_events(state, {"page_view", "*"}, BASE_TS, "v1")
    assert set(first.segments) == {"viewer", "retired"}
    state.segments, state.next_check_ms = first.segments, first.next_check_ms

    after = book("segments: [{name: viewer, condition: {last: {event: page_view, within: 7d}}}]")
    evaluation = after.after_events(state, {"click", "*"}, BASE_TS + HOUR, "c1")
    assert changes_of(evaluation) == [("retired", "exited")]
    assert evaluation.transitions is not None
    assert (evaluation.transitions.cause, evaluation.transitions.definition_version) == ("c1", after.version)
    assert set(evaluation.segments) == {"viewer"}
