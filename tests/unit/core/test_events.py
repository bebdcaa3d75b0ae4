from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.errors import InvalidEvent
from streams.core.events import EVENT_TYPES, parse_event, parse_timestamp
from tests.factories import BASE_TS, encoded, event_doc


def parse(doc: dict[str, Any], key: bytes | None = b"u1") -> Any:
    return parse_event(encoded(doc), key, 65_536)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_type_has_a_valid_example(event_type: str) -> None:
    event = parse(event_doc(event_type))
    assert event.type == event_type
    assert event.timestamp_ms == BASE_TS


def test_rfc3339_and_epoch_millis_agree() -> None:
    assert parse_timestamp("2026-11-28T08:00:00Z") == BASE_TS
    assert parse_timestamp("2026-11-28T09:00:00+01:00") == BASE_TS
    assert parse_timestamp(BASE_TS) == BASE_TS


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "`timestamp` must be RFC 3339 or epoch milliseconds; got 'yesterday'"),
        ("2026-11-28T08:00:00", "must carry a UTC offset"),
        (1_795_860_000, "must fall between 2000 and 2100"),
        (True, "RFC 3339 or epoch milliseconds; got True"),
        (None, "got null or nothing"),
    ],
)
def test_bad_timestamps_say_what_was_expected(value: Any, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message.replace("(", r"\(")):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("event_id"), "`event_id` must be a non-empty string"),
        (lambda d: d.update(user_id=""), "`user_id` must be a non-empty string"),
        (lambda d: d.update(type="teleport"), "`type` must be one of signup, profile_update"),
        (lambda d: d.update(properties=[]), "`properties` must be an object; got a list"),
        (lambda d: d.update(context={"email": 5}), "`context.email` must be a string; got 5"),
        (lambda d: d["properties"].update(total=-1), "`properties.total` must be a number >= 0; got -1"),
        (lambda d: d["properties"].update(currency="euro"), "`properties.currency` must be a 3-letter ISO 4217 code"),
        (lambda d: d["properties"].update(items=[]), "`properties.items` must be a non-empty list"),
        (lambda d: d["properties"]["items"][0].update(quantity=0), r"`properties.items\[0\].quantity` must be a whole"),
        (lambda d: d["properties"]["items"][0].pop("sku"), r"`properties.items\[0\].sku` must be a non-empty string"),
    ],
)
def test_contract_violations_are_named_precisely(mutate: Any, message: str) -> None:
    doc = event_doc("purchase")
    mutate(doc)
    with pytest.raises(InvalidEvent, match=message):
        parse(doc)


def test_message_key_must_be_the_user() -> None:
    with pytest.raises(InvalidEvent, match=r"message key must equal `user_id`"):
        parse(event_doc("click"), key=b"someone-else")


def test_oversized_and_non_json_messages_are_refused() -> None:
    with pytest.raises(InvalidEvent, match=r"message is 70000 bytes; the limit is 65536"):
        parse_event(b" " * 70_000, b"u1", 65_536)
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        parse_event(b"{nope", b"u1", 65_536)
    with pytest.raises(InvalidEvent, match="event must be a JSON object; got a list"):
        parse_event(b"[1, 2]", b"u1", 65_536)
    with pytest.raises(InvalidEvent, match="message has no value"):
        parse_event(None, b"u1", 65_536)


def test_profile_update_traits_must_be_scalars() -> None:
    with pytest.raises(InvalidEvent, match=r"`properties.traits.tags` must be a string, number, boolean or null"):
        parse(event_doc("profile_update", traits={"tags": ["a"]}))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_invalid_event(raw: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        parse_event(raw, None, 65_536)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(EVENT_TYPES),
    st.dictionaries(
        st.sampled_from(["event_id", "user_id", "type", "timestamp", "properties", "context"]), json_values
    ),
    st.dictionaries(st.text(max_size=12), json_values, max_size=6),
)
def test_fuzzed_events_only_ever_raise_invalid_event(
    event_type: str, overrides: dict[str, Any], props: dict[str, Any]
) -> None:
    doc = event_doc(event_type)
    doc["properties"].update(props)
    doc.update(overrides)
    with contextlib.suppress(InvalidEvent):
        parse_event(orjson.dumps(doc), None, 65_536)
