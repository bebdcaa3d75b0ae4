"""Builders for events and records used across the test suite."""

from __future__ import annotations

from typing import Any

import orjson

from streams.core.events import Event, validate_event

BASE_TS = 1_795_852_800_000  # 2026-11-28T08:00:00Z


def event_doc(
    event_type: str, user_id: str = "u1", event_id: str | None = None, ts: int = BASE_TS, **properties: Any
) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "signup": {"source": "web"},
        "profile_update": {"traits": {"age": 31}},
        "page_view": {"url": "/p/OUT-001", "category": "outdoor", "sku": "OUT-001"},
        "click": {"url": "/p/OUT-001#buy", "category": "outdoor", "sku": "OUT-001"},
        "cart_add": {"cart_id": "c1", "item": item()},
        "cart_remove": {"cart_id": "c1", "sku": "OUT-001"},
        "purchase": {"order_id": "o1", "items": [item()], "total": 59.9, "currency": "EUR"},
        "email_open": {"job_id": "j1"},
        "email_click": {"job_id": "j1", "url": "/offers"},
        "unsubscribe": {"list": "marketing"},
        "email_bounce": {"job_id": "j1", "bounce": "hard", "reason": "550 5.1.1 no such user"},
        "subscribe": {"list": "marketing", "source": "checkout"},
        "erase": {"source": "crm"},
    }
    return {
        "event_id": event_id or f"{event_type}-{user_id}-{ts}",
        "user_id": user_id,
        "type": event_type,
        "timestamp": ts,
        "properties": {**defaults[event_type], **properties},
    }


def item(sku: str = "OUT-001", category: str = "outdoor", price: float = 59.9, quantity: int = 1) -> dict[str, Any]:
    return {"sku": sku, "name": f"Item {sku}", "category": category, "price": price, "quantity": quantity}


def make_event(event_type: str, user_id: str = "u1", context: dict[str, Any] | None = None, **kwargs: Any) -> Event:
    doc = event_doc(event_type, user_id, **kwargs)
    if context is not None:
        doc["context"] = context
    return validate_event(doc, user_id.encode())


def encoded(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)
