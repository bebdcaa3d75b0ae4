"""What each of Segment's calls means in Tidemail's event contract: the type, properties and
context fields it becomes (Segment's e-commerce spec v2, its B2B SaaS `Signed Up`, and its
identify and page specs). Pure; `streams.core.tracking` turns requests into calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from streams.core.errors import InvalidEvent, shown
from streams.core.events import json_kind

CALL_TYPES: Final = ("track", "identify", "page")
# Segment's track names and the type each becomes; any other name is refused, naming these.
TRACK_EVENTS: Final = {
    "Signed Up": "signup",
    "Product Viewed": "page_view",
    "Product Clicked": "click",
    "Product Added": "cart_add",
    "Product Removed": "cart_remove",
    "Order Completed": "purchase",
}
# Segment's spec: revenue without a currency is in US dollars.
DEFAULT_CURRENCY: Final = "USD"


class CallRefused(InvalidEvent):
    """A call (or a whole request) that cannot become events: the field at fault, in Segment's
    terms (None for the call as a whole), and the problem."""

    def __init__(self, field: str | None, problem: str, *, too_large: bool = False) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem
        self.too_large = too_large


# The event type, its properties, and what the call says of the person (email, first_name,
# timezone) for the context.
Built = tuple[str, dict[str, Any], dict[str, Any]]


def _track(call: Mapping[str, Any], context: Mapping[str, Any]) -> Built:
    name = call.get("event")
    event_type = TRACK_EVENTS.get(name) if isinstance(name, str) else None
    if event_type is None:
        raise CallRefused(
            "event", f"`event` must be one of the events Tidemail maps ({', '.join(TRACK_EVENTS)}); got {shown(name)}"
        )
    props = object_field(call, "properties")
    if event_type == "signup":
        source = _text(props, "source", "type")
        people = {"email": _text(props, "email"), "first_name": _text(props, "first_name", "firstName")}
        return event_type, ({"source": source} if source else {}), people
    if event_type in ("page_view", "click"):
        url = _text(props, "url") or _text(_part(context, "page"), "url")
        if url is None:
            raise CallRefused("properties.url", f"{name} needs `properties.url` (or `context.page.url`); got neither")
        return event_type, _viewed(props, url), {}
    if event_type == "cart_add":
        return event_type, {"cart_id": props.get("cart_id"), "item": _item(props, "properties.")}, {}
    if event_type == "cart_remove":
        return event_type, {"cart_id": props.get("cart_id"), "sku": _sku(props, "properties.")}, {}
    return event_type, _purchase(props), {}


def _page(call: Mapping[str, Any], context: Mapping[str, Any]) -> Built:
    props = object_field(call, "properties")
    page = _part(context, "page")
    url = _text(props, "url") or _text(page, "url") or _text(props, "path") or _text(page, "path")
    if url is None:
        raise CallRefused("properties.url", "a page needs `properties.url` (or `path`, `context.page.url`); got none")
    viewed = _viewed(props, url)
    category = call.get("category")
    if "category" not in viewed and isinstance(category, str) and category:
        viewed["category"] = category
    return "page_view", viewed, {}


def _identify(call: Mapping[str, Any], context: Mapping[str, Any]) -> Built:
    traits = call.get("traits")
    if not isinstance(traits, dict) or not traits:
        raise CallRefused("traits", f"`traits` must be a non-empty object; got {shown(traits)}")
    people = {
        "email": _text(traits, "email"),
        "first_name": _text(traits, "firstName", "first_name"),
        "timezone": _text(traits, "timezone"),
    }
    return "profile_update", {"traits": _flat_traits(traits, "")}, people


CALL_BUILDERS: Final[dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Built]]] = {
    "track": _track,
    "identify": _identify,
    "page": _page,
}


def _viewed(props: Mapping[str, Any], url: str) -> dict[str, Any]:
    viewed: dict[str, Any] = {"url": url}
    category = _text(props, "category")
    if category is not None:
        viewed["category"] = category
    sku = _text(props, "sku", "product_id")
    if sku is not None:
        viewed["sku"] = sku
    return viewed


def _item(product: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "sku": _sku(product, where),
        "name": product.get("name"),
        "category": product.get("category"),
        "price": product.get("price"),
        "quantity": product.get("quantity", 1),
    }


def _sku(product: Mapping[str, Any], where: str) -> str:
    sku = _text(product, "sku", "product_id")
    if sku is None:
        raise CallRefused(
            f"{where}sku",
            f"`{where}sku` (or `{where}product_id`) must be a non-empty string; got {shown(product.get('sku'))}",
        )
    return sku


def _purchase(props: Mapping[str, Any]) -> dict[str, Any]:
    products = props.get("products")
    if isinstance(products, list):
        products = [
            _item(product, f"properties.products[{n}].") if isinstance(product, dict) else product
            for n, product in enumerate(products)
        ]
    currency = props.get("currency", DEFAULT_CURRENCY)
    order = {
        "order_id": props.get("order_id"),
        "items": products,
        "total": props["total"] if "total" in props else props.get("revenue"),
        "currency": currency.upper() if isinstance(currency, str) else currency,
    }
    cart_id = _text(props, "cart_id")
    if cart_id is not None:
        order["cart_id"] = cart_id
    return order


def _flat_traits(traits: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Traits as the contract keeps them: `firstName` as `first_name`, and an object trait
    (Segment's `address`, `company`) as one trait per field, `address.city`."""
    flat: dict[str, Any] = {}
    for name, value in traits.items():
        key = prefix + ("first_name" if name == "firstName" and not prefix else name)
        if isinstance(value, dict):
            flat.update(_flat_traits(value, f"{key}."))
        elif isinstance(value, list):
            raise CallRefused(
                f"traits.{key}", f"`traits.{key}` must be a string, number, boolean, null or object; got a list"
            )
        else:
            flat[key] = value
    return flat


def tidemail_context(context: Mapping[str, Any], people: Mapping[str, str | None]) -> dict[str, str]:
    """The contract's context fields, from the call itself first, then Segment's context."""
    traits = _part(context, "traits")
    found = {
        "email": people.get("email") or _text(traits, "email"),
        "first_name": people.get("first_name") or _text(traits, "firstName", "first_name"),
        "locale": _text(context, "locale"),
        "timezone": people.get("timezone") or _text(context, "timezone"),
        "country": _text(_part(context, "location"), "country"),
        "device": _text(_part(context, "device"), "type"),
    }
    return {name: value for name, value in found.items() if value is not None}


def object_field(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CallRefused(name, f"`{name}` must be an object; got {json_kind(value)}")
    return value


def _part(context: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """An object inside Segment's `context` (`page`, `traits`, `location`, `device`); anything
    else there is not ours to refuse, so it reads as empty."""
    value = context.get(name)
    return value if isinstance(value, dict) else {}


def _text(doc: Mapping[str, Any], *names: str) -> str | None:
    """The first of `names` that holds a non-empty string."""
    for name in names:
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value
    return None
