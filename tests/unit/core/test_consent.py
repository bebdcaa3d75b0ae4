"""`subscribe` events: consent recorded per list, an unsubscribe lifted, the later of a
subscribe and an unsubscribe standing whatever order they arrive in; and marketing email
only with recorded consent when the deployment requires it (`no_consent`)."""

from __future__ import annotations

from dataclasses import replace

from streams.core.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, make_event
from tests.unit.core.support import OPEN_GOVERNANCE, Store, processor, record, signup

MINUTE = 60_000
POLICY = StatePolicy()


def after(state: UserState, event_type: str, ts: int, **properties: object) -> UserState:
    return apply(state, make_event(event_type, event_id=f"{event_type}-{ts}", ts=ts, **properties), POLICY)


def test_a_subscribe_lifts_the_unsubscribe_and_records_the_consent() -> None:
    state = after(UserState("u1"), "unsubscribe", BASE_TS, list="marketing")
    assert state.is_unsubscribed() and not state.has_consent()
    state = after(state, "subscribe", BASE_TS + MINUTE, list="marketing", source="checkout", consented_at=BASE_TS + 5)
    assert not state.is_unsubscribed()
    assert state.has_consent("marketing")
    assert state.subscriptions["marketing"] == {
        "at": BASE_TS + MINUTE,
        "consented_at": BASE_TS + 5,
        "source": "checkout",
    }


def test_consent_defaults_to_the_events_instant_and_an_unsubscribe_withdraws_it() -> None:
    state = after(UserState("u1"), "subscribe", BASE_TS, list="news", source=None)
    assert state.subscriptions["news"]["consented_at"] == BASE_TS
    assert state.has_consent("news") and not state.has_consent("marketing")
    state = after(state, "unsubscribe", BASE_TS + MINUTE, list="news")
    assert not state.has_consent("news") and state.is_unsubscribed("news")


def test_an_older_subscribe_or_unsubscribe_arriving_late_does_not_undo_a_newer_one() -> None:
    left = after(UserState("u1"), "unsubscribe", BASE_TS + MINUTE, list="marketing")
    # A backfill replays a consent given before the user left: they stay unsubscribed.
    assert after(left, "subscribe", BASE_TS, list="marketing").is_unsubscribed()
    joined = after(UserState("u1"), "subscribe", BASE_TS + MINUTE, list="marketing")
    stale = after(joined, "unsubscribe", BASE_TS, list="marketing")
    assert not stale.is_unsubscribed() and stale.has_consent()


def test_all_covers_every_list_and_a_subscribe_to_one_list_leaves_all_in_force() -> None:
    state = after(UserState("u1"), "unsubscribe", BASE_TS, list="all")
    state = after(state, "unsubscribe", BASE_TS + 2 * MINUTE, list="news")
    state = after(state, "subscribe", BASE_TS + MINUTE, list="marketing")
    assert state.is_unsubscribed("marketing")
    state = after(state, "subscribe", BASE_TS + 90_000, list="all")
    # `all` lifts every unsubscribe not newer than it: news was left later.
    assert state.unsubscribed_lists == ["news"]
    assert state.has_consent("marketing") and state.has_consent("transactional")


def test_with_consent_required_marketing_email_waits_for_a_recorded_consent() -> None:
    required = processor(governance=replace(OPEN_GOVERNANCE, require_consent=True))
    refused = required.process({0: [record(0, signup("u1"))]}, Store().load)
    assert refused.outputs.jobs == []
    assert refused.counts.governance == {"no_consent": 1}
    store = Store()
    consent = {"event_id": "s2", "user_id": "u2", "type": "subscribe", "timestamp": BASE_TS - 1}
    store.save(required.process({0: [record(0, consent)]}, store.load))
    allowed = required.process({0: [record(1, signup("u2"))]}, store.load)
    assert len(allowed.outputs.jobs) == 1
    assert allowed.counts.governance == {"allowed": 1}
    # Not required (the default): the same signup is sent without a consent.
    assert len(processor().process({0: [record(0, signup("u1"))]}, Store().load).outputs.jobs) == 1
