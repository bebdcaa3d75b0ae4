from __future__ import annotations

from dataclasses import fields

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.propensity import Probe
from streams.core.state import MILLIS_PER_DAY, ExperimentSend, StatePolicy, UserState, apply
from streams.core.state_codec import (
    FORMAT_VERSION,
    STORED_FIELDS,
    StateFormatError,
    decode_state,
    encode_state,
    state_document,
)
from tests.factories import BASE_TS, item, make_event

POLICY = StatePolicy()


def run(*events: object) -> UserState:
    state = UserState("u1")
    for event in events:
        state = apply(state, event, POLICY)  # type: ignore[arg-type]
    return state


def busy_user() -> UserState:
    """A user with every kind of instant: counts, segments, interests, windows, cart, orders,
    flows, sends, a probe and an experiment email."""
    state = run(
        make_event("signup", event_id="s", context={"first_name": "Zoë"}),
        make_event("page_view", event_id="v", ts=BASE_TS + 60_000, category="books"),
        make_event("cart_add", event_id="c", ts=BASE_TS + 120_000),
        make_event("purchase", event_id="p", ts=BASE_TS + 3 * MILLIS_PER_DAY, items=[item("O1", category="outdoor")]),
        make_event("email_open", event_id="o", ts=BASE_TS + 4 * MILLIS_PER_DAY),
    )
    state.segments = {"buyers": BASE_TS + 3 * MILLIS_PER_DAY}
    state.windows = {"count|page_view||3600000": [BASE_TS - BASE_TS % 60_000, 1.0, BASE_TS + 60_000, 2.0]}
    state.flows_entered = {"welcome": BASE_TS}
    state.marketing_sends = [BASE_TS + 5, BASE_TS + MILLIS_PER_DAY]
    state.next_check_ms = state.indexed_due_ms = BASE_TS + 5 * MILLIS_PER_DAY
    state.propensity_probe = Probe(BASE_TS + 7, [0.5, 1.0], ["purchase"])
    state.experiment_jobs = [ExperimentSend("j1", "welcome_preheader", "picks", BASE_TS + 9, False)]
    state.erased_ms = BASE_TS - 10
    return state


def test_a_state_reads_back_equal() -> None:
    state = busy_user()
    assert decode_state(encode_state(state)) == state


def test_instants_are_stored_relative_to_first_seen() -> None:
    state = busy_user()
    raw = encode_state(state)
    assert raw[0] == FORMAT_VERSION
    assert raw.count(str(BASE_TS)[:6].encode()) == 1  # first_seen_ms itself, and nothing else
    assert len(raw) < 0.6 * len(orjson.dumps(state_document(state)))


def test_states_stored_as_json_objects_still_read() -> None:
    state = busy_user()
    legacy = orjson.dumps(state_document(state))
    assert legacy.startswith(b"{")
    assert decode_state(legacy) == state


def test_the_object_format_kept_the_probe_as_an_object_and_sends_as_arrays() -> None:
    stored = (
        b'{"user_id":"u1","propensity_probe":{"at":5,"x":[0.5,1.0],"y":["open"]},'
        b'"experiment_jobs":[["j1","welcome_preheader","picks",3,false]]}'
    )
    state = decode_state(stored)
    assert state.propensity_probe == Probe(5, [0.5, 1.0], ["open"])
    assert state.experiment_jobs == [ExperimentSend("j1", "welcome_preheader", "picks", 3, False)]
    assert decode_state(encode_state(state)) == state


def test_a_new_user_is_a_few_bytes_and_fields_left_out_read_as_fresh_defaults() -> None:
    raw = encode_state(UserState("u1"))
    assert raw == bytes([FORMAT_VERSION]) + b'["u1"]'
    one, other = decode_state(raw), decode_state(raw)
    one.recent_event_ids.append("e1")
    assert other.recent_event_ids == []


def test_every_field_is_stored_once() -> None:
    assert sorted(STORED_FIELDS) == sorted(f.name for f in fields(UserState))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x07[]", "unknown format version 7"),
        (b"", "unknown format version None"),
        (bytes([FORMAT_VERSION]) + b"[]", "expected an array of 1 to"),
        (bytes([FORMAT_VERSION]) + b'{"user_id":"u1"}', "expected an array of 1 to"),
    ],
)
def test_bytes_that_are_not_a_state_are_refused_by_name(raw: bytes, problem: str) -> None:
    with pytest.raises(StateFormatError, match=problem):
        decode_state(raw)


event_types = st.sampled_from(
    ["page_view", "click", "cart_add", "purchase", "email_open", "email_click", "signup", "unsubscribe", "subscribe"]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(event_types, st.integers(-10 * MILLIS_PER_DAY, 10 * MILLIS_PER_DAY)), max_size=20))
def test_any_history_reads_back_equal(history: list[tuple[str, int]]) -> None:
    # Out-of-order events put instants before first_seen_ms: stored as negative offsets.
    state = run(*(make_event(kind, event_id=f"e{n}", ts=BASE_TS + at) for n, (kind, at) in enumerate(history)))
    assert decode_state(encode_state(state)) == state
