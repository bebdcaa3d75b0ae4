"""The event contract: decoding and validating one Kafka message into an `Event`.

Validation is hand-written rather than schema-driven because it runs for every
event on the hot path; each rule says what it expected and what arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from streams.core.errors import InvalidEvent, shown

# Tuples, not `int | float`: a union is built anew on every call (~10x slower), and
# these checks run for every event.
NUMBERS = (int, float)
SCALARS = (str, int, float, bool)

EVENT_TYPES: Final = (
    "signup",
    "profile_update",
    "page_view",
    "click",
    "cart_add",
    "cart_remove",
    "purchase",
    "email_open",
    "email_click",
    "unsubscribe",
    "email_bounce",
    "subscribe",
    "erase",
)
# A hard bounce (the address does not exist) suppresses every later email; a soft one does not.
BOUNCE_KINDS: Final = ("hard", "soft")
CONTEXT_FIELDS: Final = ("email", "first_name", "locale", "timezone", "country", "device")
MAX_ID_LENGTH: Final = 200
# Timestamps outside 2000..2100 are almost always seconds-vs-milliseconds mistakes.
MIN_TIMESTAMP_MS: Final = 946_684_800_000
MAX_TIMESTAMP_MS: Final = 4_102_444_800_000


# Not frozen: a frozen dataclass's __init__ costs ~0.5 us more, and one is built per event.
@dataclass(slots=True)
class Event:
    """One validated user event; `properties` and `context` are plain JSON objects."""

    event_id: str
    user_id: str
    type: str
    timestamp_ms: int
    properties: dict[str, Any]
    context: dict[str, Any]


def parse_event(raw: bytes | None, key: bytes | None, max_bytes: int) -> Event:
    """Decode and validate one message; raise `InvalidEvent` naming the first problem found."""
    if raw is None:
        raise InvalidEvent("message has no value; expected a JSON event object")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent(f"message is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidEvent(f"event must be a JSON object; got {json_kind(doc)}")
    return validate_event(doc, key)


def validate_event(doc: Mapping[str, Any], key: bytes | None) -> Event:
    """Check a decoded JSON object against the contract and build the `Event`."""
    event_id = _identifier(doc, "event_id")
    user_id = _identifier(doc, "user_id")
    if key is not None and key != user_id.encode():
        raise InvalidEvent(
            f"message key must equal `user_id` so the user's events share a partition; "
            f"got key {key[:50]!r} for user_id {user_id[:50]!r}"
        )
    event_type = doc.get("type")
    if not isinstance(event_type, str) or event_type not in _PROPERTY_RULES:
        raise InvalidEvent(f"`type` must be one of {', '.join(EVENT_TYPES)}; got {shown(event_type)}")
    timestamp_ms = parse_timestamp(doc.get("timestamp"))
    properties = doc.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidEvent(f"`properties` must be an object; got {json_kind(properties)}")
    for rule in _PROPERTY_RULES[event_type]:
        rule(properties)
    context = doc.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise InvalidEvent(f"`context` must be an object; got {json_kind(context)}")
    for name in CONTEXT_FIELDS:
        value = context.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidEvent(f"`context.{name}` must be a string; got {shown(value)}")
    return Event(event_id, user_id, event_type, timestamp_ms, properties, context)


def parse_timestamp(value: Any, name: str = "timestamp") -> int:
    """Accept RFC 3339 with an offset, or epoch milliseconds; return epoch milliseconds.
    `name` is the field named in the error."""
    expected = f"`{name}` must be RFC 3339 or epoch milliseconds"
    if isinstance(value, bool):
        raise InvalidEvent(f"{expected}; got {shown(value)}")
    if isinstance(value, int):
        millis = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as e:
            raise InvalidEvent(f"{expected}; got {shown(value)}") from e
        if parsed.tzinfo is None:
            raise InvalidEvent(f"`{name}` must carry a UTC offset such as 'Z'; got {shown(value)}")
        millis = int(parsed.timestamp() * 1000)
    else:
        raise InvalidEvent(f"{expected}; got {shown(value)}")
    if not MIN_TIMESTAMP_MS <= millis <= MAX_TIMESTAMP_MS:
        raise InvalidEvent(f"`{name}` must fall between 2000 and 2100; got {shown(value)}")
    return millis


def _identifier(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(
            f"`{name}` must be a non-empty string of at most {MAX_ID_LENGTH} characters; got {shown(value)}"
        )
    return value


Rule = Callable[[Mapping[str, Any]], None]


def _text(name: str, *, required: bool = True) -> Rule:
    def check(properties: Mapping[str, Any]) -> None:
        value = properties.get(name)
        if value is None and not required:
            return
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"`properties.{name}` must be a non-empty string; got {shown(value)}")

    return check


def _amount(name: str) -> Rule:
    def check(properties: Mapping[str, Any]) -> None:
        value = properties.get(name)
        if isinstance(value, bool) or not isinstance(value, NUMBERS) or value < 0:
            raise InvalidEvent(f"`properties.{name}` must be a number >= 0; got {shown(value)}")

    return check


def _currency(properties: Mapping[str, Any]) -> None:
    value = properties.get("currency")
    # isascii: str.isalpha and isupper also pass 'ÉUR' or 'ΑΒΓ', which no ISO 4217 code is.
    if (
        not isinstance(value, str)
        or len(value) != 3
        or not value.isascii()
        or not value.isalpha()
        or not value.isupper()
    ):
        raise InvalidEvent(f"`properties.currency` must be a 3-letter ISO 4217 code like 'EUR'; got {shown(value)}")


def check_item(item: Any, where: str) -> None:
    """Validate one cart or order line: sku, name, category, price, quantity."""
    if not isinstance(item, dict):
        raise InvalidEvent(
            f"`{where}` must be an object with sku, name, category, price, quantity; got {json_kind(item)}"
        )
    for text_field in ("sku", "name", "category"):
        value = item.get(text_field)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"`{where}.{text_field}` must be a non-empty string; got {shown(value)}")
    price = item.get("price")
    if isinstance(price, bool) or not isinstance(price, NUMBERS) or price < 0:
        raise InvalidEvent(f"`{where}.price` must be a number >= 0; got {shown(price)}")
    quantity = item.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidEvent(f"`{where}.quantity` must be a whole number >= 1; got {shown(quantity)}")


def _item(properties: Mapping[str, Any]) -> None:
    check_item(properties.get("item"), "properties.item")


def _items(properties: Mapping[str, Any]) -> None:
    items = properties.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidEvent(f"`properties.items` must be a non-empty list of items; got {shown(items)}")
    for index, item in enumerate(items):
        check_item(item, f"properties.items[{index}]")


def _bounce_kind(properties: Mapping[str, Any]) -> None:
    value = properties.get("bounce")
    if value not in BOUNCE_KINDS:
        raise InvalidEvent(f"`properties.bounce` must be one of {', '.join(BOUNCE_KINDS)}; got {shown(value)}")


def _consented_at(properties: Mapping[str, Any]) -> None:
    value = properties.get("consented_at")
    if value is not None:
        parse_timestamp(value, "properties.consented_at")


def _traits(properties: Mapping[str, Any]) -> None:
    traits = properties.get("traits")
    if not isinstance(traits, dict) or not traits:
        raise InvalidEvent(f"`properties.traits` must be a non-empty object; got {shown(traits)}")
    for name, value in traits.items():
        if value is not None and not isinstance(value, SCALARS):
            raise InvalidEvent(
                f"`properties.traits.{name}` must be a string, number, boolean or null; got {json_kind(value)}"
            )


_PROPERTY_RULES: Final[dict[str, tuple[Rule, ...]]] = {
    "signup": (_text("source", required=False),),
    "profile_update": (_traits,),
    "page_view": (_text("url"), _text("category", required=False), _text("sku", required=False)),
    "click": (_text("url"), _text("category", required=False), _text("sku", required=False)),
    "cart_add": (_text("cart_id"), _item),
    "cart_remove": (_text("cart_id"), _text("sku")),
    "purchase": (_text("order_id"), _items, _amount("total"), _currency),
    "email_open": (_text("job_id"),),
    "email_click": (_text("job_id"), _text("url")),
    "unsubscribe": (_text("list", required=False),),
    "email_bounce": (_text("job_id"), _bounce_kind, _text("reason", required=False)),
    # Consent to a list (default marketing), given at `consented_at` (default: the event's instant).
    "subscribe": (_text("list", required=False), _text("source", required=False), _consented_at),
    # Forget the user (GDPR art. 17): see streams/core/erasure.py.
    "erase": (_text("source", required=False),),
}


def json_kind(value: Any) -> str:
    """What a JSON value is, as messages name it."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
    return type(value).__name__
