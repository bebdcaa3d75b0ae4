"""Segment's calls as events of the contract (streams/core/tracking.py): each mapping, each
refusal naming the field as the caller sent it, and every accepted event valid for the
worker and for the published schema."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from streams.core.events import parse_event
from streams.core.schemas import schema
from streams.core.tracking import MAX_BATCH_BYTES, MAX_CALL_BYTES, call_to_event, translate_request
from streams.core.tracking_calls import TRACK_EVENTS, CallRefused

RECEIVED_MS = 1_795_852_800_000  # 2026-11-28T08:00:00Z
SCHEMA = Draft202012Validator(schema("event"))


def product(**overrides: Any) -> dict[str, Any]:
    return {
        "product_id": "507f1f77",
        "sku": "G-32",
        "name": "Monopoly",
        "category": "Games",
        "price": 18.99,
        **overrides,
    }


def track(event: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u42", "messageId": f"m-{event}", "event": event, "properties": properties}


def mapped(call: dict[str, Any], **options: Any) -> dict[str, Any]:
    doc = call_to_event(call, RECEIVED_MS, **options)
    # Whatever the mapping accepts, the worker and the published schema accept too.
    parse_event(orjson.dumps(doc), doc["user_id"].encode(), 65_536)
    errors = [error.message for error in SCHEMA.iter_errors(doc)]
    assert errors == [], errors
    return doc


def refused(call: Any, **options: Any) -> CallRefused:
    with pytest.raises(CallRefused) as caught:
        call_to_event(call, RECEIVED_MS, **options)
    return caught.value


def test_signed_up_is_a_signup_with_the_persons_email_and_first_name() -> None:
    call = track("Signed Up", type="organic", email="ann@example.com", first_name="Ann")
    doc = mapped(call)
    assert doc["type"] == "signup"
    assert doc["event_id"] == "m-Signed Up"
    assert doc["user_id"] == "u42"
    assert doc["properties"] == {"source": "organic"}
    assert doc["context"] == {"email": "ann@example.com", "first_name": "Ann"}


def test_context_traits_locale_timezone_location_and_device_become_the_contracts_context() -> None:
    call = track("Signed Up")
    call["context"] = {
        "traits": {"email": "bo@example.com", "firstName": "Bo"},
        "locale": "en-GB",
        "timezone": "Europe/London",
        "location": {"country": "GB"},
        "device": {"type": "ios", "model": "iPhone16,2"},
        "ip": "203.0.113.9",
        "library": {"name": "analytics-python", "version": "2.4.0"},
    }
    assert mapped(call)["context"] == {
        "email": "bo@example.com",
        "first_name": "Bo",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "country": "GB",
        "device": "ios",
    }


def test_product_viewed_and_clicked_are_page_views_and_clicks_with_the_sku() -> None:
    viewed = mapped(track("Product Viewed", **product(url="https://shop.example.com/p/G-32")))
    assert viewed["type"] == "page_view"
    assert viewed["properties"] == {"url": "https://shop.example.com/p/G-32", "category": "Games", "sku": "G-32"}
    clicked = track("Product Clicked", **product(sku=None))
    clicked["context"] = {"page": {"url": "https://shop.example.com/games"}}
    assert mapped(clicked)["properties"] == {
        "url": "https://shop.example.com/games",
        "category": "Games",
        "sku": "507f1f77",  # no sku: the product_id
    }
    assert mapped(clicked)["type"] == "click"


def test_product_added_and_removed_are_cart_changes() -> None:
    added = mapped(track("Product Added", cart_id="c-9", quantity=2, **product()))
    assert added["type"] == "cart_add"
    assert added["properties"] == {
        "cart_id": "c-9",
        "item": {"sku": "G-32", "name": "Monopoly", "category": "Games", "price": 18.99, "quantity": 2},
    }
    assert mapped(track("Product Added", cart_id="c-9", **product()))["properties"]["item"]["quantity"] == 1
    removed = mapped(track("Product Removed", cart_id="c-9", **product()))
    assert (removed["type"], removed["properties"]) == ("cart_remove", {"cart_id": "c-9", "sku": "G-32"})


def test_order_completed_is_a_purchase_of_its_products() -> None:
    doc = mapped(
        track(
            "Order Completed",
            order_id="o-77",
            total=27.5,
            currency="usd",
            products=[product(quantity=1), product(sku="U-1", name="Uno", price=3, quantity=2)],
        )
    )
    assert doc["type"] == "purchase"
    assert doc["properties"] == {
        "order_id": "o-77",
        "total": 27.5,
        "currency": "USD",
        "items": [
            {"sku": "G-32", "name": "Monopoly", "category": "Games", "price": 18.99, "quantity": 1},
            {"sku": "U-1", "name": "Uno", "category": "Games", "price": 3, "quantity": 2},
        ],
    }


def test_an_order_without_total_uses_revenue_and_one_without_currency_is_in_us_dollars() -> None:
    doc = mapped(track("Order Completed", order_id="o-1", revenue=18.99, products=[product()]))
    assert (doc["properties"]["total"], doc["properties"]["currency"]) == (18.99, "USD")


def test_a_page_call_is_a_page_view() -> None:
    call = {"type": "page", "userId": "u42", "messageId": "p1", "name": "Home", "category": "Docs"}
    call["properties"] = {"url": "https://shop.example.com/", "title": "Shop"}
    assert mapped(call)["properties"] == {"url": "https://shop.example.com/", "category": "Docs"}
    path_only = {"userId": "u42", "messageId": "p2", "properties": {"path": "/outdoor"}}
    assert mapped(path_only, call_type="page")["properties"] == {"url": "/outdoor"}
    assert refused({"userId": "u42"}, call_type="page").field == "properties.url"


def test_identify_is_a_profile_update_of_its_traits() -> None:
    call = {
        "type": "identify",
        "userId": "u42",
        "messageId": "i1",
        "traits": {
            "email": "ann@example.com",
            "firstName": "Ann",
            "timezone": "Europe/Paris",
            "vip": True,
            "nickname": None,
            "address": {"city": "Lyon", "country": "FR"},
        },
    }
    doc = mapped(call)
    assert doc["type"] == "profile_update"
    assert doc["properties"]["traits"] == {
        "email": "ann@example.com",
        "first_name": "Ann",
        "timezone": "Europe/Paris",
        "vip": True,
        "nickname": None,
        "address.city": "Lyon",
        "address.country": "FR",
    }
    assert doc["context"] == {"email": "ann@example.com", "first_name": "Ann", "timezone": "Europe/Paris"}


def test_timestamp_is_corrected_for_clock_skew_when_sent_at_is_known() -> None:
    call = track("Signed Up")
    assert mapped(call)["timestamp"] == RECEIVED_MS  # none sent: when it arrived
    call["timestamp"] = "2026-11-28T07:00:00Z"
    assert mapped(call)["timestamp"] == RECEIVED_MS - 3_600_000
    # The client's clock is 10 s fast: it sent 5 s after the event, by its own clock.
    call["sentAt"] = "2026-11-28T08:00:15+00:00"
    call["timestamp"] = "2026-11-28T08:00:10+00:00"
    assert mapped(call)["timestamp"] == RECEIVED_MS - 5_000
    del call["sentAt"]
    batch_sent_at_ms = RECEIVED_MS + 15_000
    assert mapped(call, sent_at_ms=batch_sent_at_ms)["timestamp"] == RECEIVED_MS - 5_000  # the batch's


def test_without_message_id_the_same_call_gets_the_same_event_id() -> None:
    call = track("Signed Up")
    del call["messageId"]
    call["timestamp"] = "2026-11-28T07:00:00Z"
    first = mapped(call)["event_id"]
    assert first.startswith("segment-")
    assert mapped(dict(call))["event_id"] == first
    assert mapped({**call, "timestamp": "2026-11-28T07:00:01Z"})["event_id"] != first


@pytest.mark.parametrize(
    ("call", "field", "problem"),
    [
        (track("Checkout Started"), "event", "must be one of the events Tidemail maps (Signed Up, Product Viewed"),
        ({**track("Signed Up"), "type": "screen"}, "type", "`type` must be one of track, identify, page; got 'screen'"),
        ({**track("Signed Up"), "userId": None, "anonymousId": "a1"}, "userId", "only `anonymousId`"),
        ({**track("Signed Up"), "userId": ""}, "userId", "`userId` must be a non-empty string"),
        ({**track("Signed Up"), "messageId": 7}, "messageId", "`messageId` must be a non-empty string"),
        ({**track("Signed Up"), "timestamp": "yesterday"}, "timestamp", "RFC 3339 or epoch milliseconds"),
        ({**track("Signed Up"), "timestamp": 1795852800000, "sentAt": "soon"}, "sentAt", "`sentAt` must be"),
        ({**track("Signed Up"), "properties": [1]}, "properties", "`properties` must be an object; got a list"),
        ({**track("Signed Up"), "context": "web"}, "context", "`context` must be an object; got a string"),
        (track("Product Viewed", **product()), "properties.url", "needs `properties.url`"),
        (track("Product Added", **product()), "properties.cart_id", "`properties.cart_id` must be a non-empty"),
        (track("Product Added", cart_id="c", **product(price="18.99")), "properties.price", "must be a number >= 0"),
        (track("Product Added", cart_id="c", **product(category=None)), "properties.category", "non-empty string"),
        (track("Product Removed", cart_id="c"), "properties.sku", "`properties.sku` (or `properties.product_id`)"),
        (track("Order Completed", total=1, products=[product()]), "properties.order_id", "non-empty string"),
        (track("Order Completed", order_id="o", total=1), "properties.products", "non-empty list of items"),
        (
            track("Order Completed", order_id="o", total=1, products=[product(), product(quantity=0)]),
            "properties.products[1].quantity",
            "whole number >= 1; got 0",
        ),
        (track("Order Completed", order_id="o", products=[product()]), "properties.total", "must be a number"),
        (
            track("Order Completed", order_id="o", total=1, currency="euro", products=[product()]),
            "properties.currency",
            "3-letter ISO 4217 code",
        ),
        ({"type": "identify", "userId": "u1"}, "traits", "`traits` must be a non-empty object"),
        ({"type": "identify", "userId": "u1", "traits": {"tags": ["a"]}}, "traits.tags", "got a list"),
        ({"type": "identify", "userId": "u1", "traits": {"n": {"deep": [1]}}}, "traits.n.deep", "got a list"),
        ("track", None, "each call must be a JSON object; got a string"),
    ],
)
def test_a_bad_call_is_refused_naming_the_field_as_sent(call: Any, field: str | None, problem: str) -> None:
    refusal = refused(call)
    assert refusal.field == field
    assert problem in refusal.problem
    if field is not None:
        assert f"`{field}`" in refusal.problem or field in ("properties.url", "userId")


def test_every_supported_name_maps_and_the_refusal_lists_them_all() -> None:
    problem = refused(track("Order Placed")).problem
    assert all(name in problem for name in TRACK_EVENTS)
    assert "got 'Order Placed'" in problem


def test_a_batch_accepts_its_good_calls_and_names_each_bad_one() -> None:
    calls = [
        track("Signed Up"),
        track("Product Added", **product()),  # no cart_id
        {"type": "identify", "userId": "u42", "messageId": "i1", "traits": {"vip": True}},
        track("Coupon Applied"),
    ]
    body = {"batch": calls, "context": {"locale": "fr-FR"}, "sentAt": "2026-11-28T08:00:00Z"}
    translation = translate_request("batch", orjson.dumps(body), RECEIVED_MS)
    assert [a.index for a in translation.accepted] == [0, 2]
    assert [(r.index, r.field) for r in translation.refused] == [(1, "properties.cart_id"), (3, "event")]
    first = orjson.loads(translation.accepted[0].value)
    assert first["context"] == {"locale": "fr-FR"}  # the batch's context, merged into each call's
    assert translation.accepted[0].user_id == "u42"


def test_a_single_call_route_sets_the_type() -> None:
    body = {"userId": "u42", "messageId": "m1", "traits": {"vip": True}}
    translation = translate_request("identify", orjson.dumps(body), RECEIVED_MS)
    assert orjson.loads(translation.accepted[0].value)["type"] == "profile_update"


def test_a_call_over_32_kb_is_refused_as_too_large_and_the_rest_of_its_batch_accepted() -> None:
    big = track("Signed Up", padding="x" * MAX_CALL_BYTES)
    translation = translate_request("batch", orjson.dumps({"batch": [big, track("Signed Up")]}), RECEIVED_MS)
    assert [a.index for a in translation.accepted] == [1]
    assert translation.refused[0].too_large
    assert "the limit per call is 32,768" in translation.refused[0].problem


@pytest.mark.parametrize(
    ("route", "raw", "field", "problem"),
    [
        ("track", b'{"userId": ', None, "the body is not valid JSON"),
        ("track", b"[1, 2]", None, "the body must be a JSON object; got a list"),
        ("batch", b'{"batch": []}', "batch", "`batch` must be a non-empty list of calls"),
        ("batch", b'{"calls": [{}]}', "batch", "`batch` must be a non-empty list"),
        ("batch", b'{"batch": [{}], "context": 3}', "context", "`context` must be an object; got a number"),
        ("batch", b'{"batch": [{}], "sentAt": "now"}', "sentAt", "`sentAt` must be RFC 3339 or epoch milliseconds"),
    ],
)
def test_an_unusable_body_is_refused_whole(route: str, raw: bytes, field: str | None, problem: str) -> None:
    with pytest.raises(CallRefused) as caught:
        translate_request(route, raw, RECEIVED_MS)
    assert (caught.value.field, caught.value.too_large) == (field, False)
    assert problem in caught.value.problem


@pytest.mark.parametrize(("route", "limit"), [("track", MAX_CALL_BYTES), ("batch", MAX_BATCH_BYTES)])
def test_a_body_over_the_routes_limit_is_too_large(route: str, limit: int) -> None:
    with pytest.raises(CallRefused) as caught:
        translate_request(route, b" " * (limit + 1), RECEIVED_MS)
    assert caught.value.too_large
    assert f"the limit of /v1/{route} is {limit:,}" in caught.value.problem
