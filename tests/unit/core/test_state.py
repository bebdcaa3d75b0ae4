from __future__ import annotations

import copy
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.state import MILLIS_PER_DAY, StatePolicy, UserState, apply
from tests.factories import BASE_TS, item, make_event

POLICY = StatePolicy()


def run(*events: object, state: UserState | None = None) -> UserState:
    current = state or UserState("u1")
    for event in events:
        current = apply(current, event, POLICY)  # type: ignore[arg-type]
    return current


def test_apply_never_mutates_its_input() -> None:
    before = run(make_event("cart_add"), make_event("page_view"))
    snapshot = copy.deepcopy(before)
    apply(before, make_event("purchase"), POLICY)
    assert before == snapshot


def test_copy_carries_every_field() -> None:
    state = run(make_event("signup", context={"email": "a@b.c"}), make_event("cart_add"))
    assert [f.name for f in fields(UserState)] == list(UserState.__slots__)
    assert state.copy() == state


def test_redelivered_event_id_changes_nothing() -> None:
    once = run(make_event("purchase"))
    assert apply(once, make_event("purchase"), POLICY) is once


def test_dedupe_window_is_bounded() -> None:
    policy = StatePolicy(dedupe_window=3)
    state = UserState("u1")
    for n in range(10):
        state = apply(state, make_event("click", event_id=f"e{n}"), policy)
    assert state.recent_event_ids == ["e7", "e8", "e9"]


def test_context_fills_traits_and_profile_update_sets_and_clears() -> None:
    state = run(
        make_event("signup", context={"email": "ann@example.com", "first_name": "Ann", "country": "GB"}),
        make_event("profile_update", traits={"age": 40, "vip": True}),
        make_event("profile_update", event_id="p2", traits={"vip": None}),
    )
    assert state.traits == {
        "email": "ann@example.com",
        "first_name": "Ann",
        "country": "GB",
        "signup_source": "web",
        "age": 40,
    }
    assert state.email == "ann@example.com"
    assert state.signed_up_ms == BASE_TS


def test_counts_last_seen_and_daily_buckets() -> None:
    state = run(
        make_event("page_view", event_id="a", ts=BASE_TS),
        make_event("page_view", event_id="b", ts=BASE_TS + MILLIS_PER_DAY),
        make_event("click", event_id="c", ts=BASE_TS + 10),
    )
    assert state.counts == {"page_view": 2, "click": 1}
    assert state.last_seen_by_type == {"page_view": BASE_TS + MILLIS_PER_DAY, "click": BASE_TS + 10}
    day = BASE_TS // MILLIS_PER_DAY
    assert state.daily_counts == {str(day): {"page_view": 1, "click": 1}, str(day + 1): {"page_view": 1}}


def test_daily_buckets_keep_only_the_configured_days() -> None:
    policy = StatePolicy(daily_history_days=3)
    state = UserState("u1")
    for n in range(6):
        state = apply(state, make_event("click", event_id=f"e{n}", ts=BASE_TS + n * MILLIS_PER_DAY), policy)
    assert len(state.daily_counts) == 3
    assert min(int(d) for d in state.daily_counts) == BASE_TS // MILLIS_PER_DAY + 3


def test_late_event_does_not_move_last_seen_back() -> None:
    state = run(make_event("click", event_id="new", ts=BASE_TS + 5000), make_event("click", event_id="old", ts=BASE_TS))
    assert state.last_seen_ms == BASE_TS + 5000
    assert state.first_seen_ms == BASE_TS


def test_cart_lifecycle_and_purchase_empties_it() -> None:
    state = run(
        make_event("cart_add", event_id="a1", cart_id="c1", item=item("A", quantity=1)),
        make_event("cart_add", event_id="a2", cart_id="c1", item=item("A", quantity=2)),
        make_event("cart_add", event_id="a3", cart_id="c1", item=item("B")),
    )
    assert state.cart is not None
    assert state.cart["items"]["A"]["quantity"] == 3
    removed = run(make_event("cart_remove", event_id="r", cart_id="c1", sku="B"), state=state)
    assert removed.cart is not None and list(removed.cart["items"]) == ["A"]
    bought = run(make_event("purchase", event_id="p", cart_id="c1"), state=removed)
    assert bought.cart is None
    assert bought.revenue == {"EUR": 59.9}
    assert bought.recent_purchases[0]["order_id"] == "o1"


def test_removing_the_last_item_clears_the_cart() -> None:
    state = run(make_event("cart_add", event_id="a"), make_event("cart_remove", event_id="r"))
    assert state.cart is None


def test_interests_rise_with_stronger_signals() -> None:
    state = run(
        make_event("page_view", event_id="v", category="books"),
        make_event("purchase", event_id="p", items=[item("O1", category="outdoor")]),
    )
    assert state.interests["outdoor"][0] > state.interests["books"][0]


def test_engagement_and_unsubscribe() -> None:
    state = run(make_event("email_open"), make_event("email_click"), make_event("unsubscribe"))
    assert state.last_email_open_ms == BASE_TS
    assert state.last_email_click_ms == BASE_TS
    assert state.is_unsubscribed("marketing")
    assert not state.is_unsubscribed("transactional")


event_types = st.sampled_from(["page_view", "click", "cart_add", "cart_remove", "purchase", "email_open", "signup"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(event_types, st.integers(0, 15), st.integers(0, 10 * MILLIS_PER_DAY)), max_size=25))
def test_replaying_any_prefix_changes_nothing(history: list[tuple[str, int, int]]) -> None:
    events = [make_event(kind, event_id=f"e{n}", ts=BASE_TS + offset) for kind, n, offset in history]
    once = run(*events)
    # Redelivery of already-applied events (within the dedupe window) is a no-op.
    recent = [e for e in events if e.event_id in once.recent_event_ids]
    assert run(*recent, state=once) == once


def test_hard_bounce_is_remembered_until_the_address_changes() -> None:
    state = apply(UserState("u1"), make_event("signup", context={"email": "a@example.com"}), POLICY)
    bounced = apply(state, make_event("email_bounce", ts=BASE_TS + 1), POLICY)
    assert bounced.hard_bounced_ms == BASE_TS + 1
    soft = make_event("email_bounce", ts=BASE_TS + 2, job_id="j2", bounce="soft")
    assert apply(bounced, soft, POLICY).hard_bounced_ms == BASE_TS + 1
    moved = make_event("profile_update", ts=BASE_TS + 3, traits={"email": "new@example.com"})
    assert apply(bounced, moved, POLICY).hard_bounced_ms is None
