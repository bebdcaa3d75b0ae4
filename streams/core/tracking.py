"""Segment's tracking calls (track, identify, page, and batches of them) as events of the contract.

Pure: `tidemail ingest` (streams/ingest/) reads the HTTP request, calls `translate_request`
and produces what it accepts. Each call becomes one event, checked by the same
`validate_event` the worker runs, or one refusal naming the call's index, the field in
Segment's terms and the problem; the other calls of a batch are unaffected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from streams.core.errors import InvalidEvent, shown
from streams.core.events import json_kind, parse_timestamp, validate_event
from streams.core.tracking_calls import (
    CALL_BUILDERS,
    CALL_TYPES,
    CallRefused,
    object_field,
    tidemail_context,
)

# Segment's limits: 32 KB per call, 500 KB per batch request.
MAX_CALL_BYTES: Final = 32 * 1024
MAX_BATCH_BYTES: Final = 500 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int
    field: str | None
    problem: str
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """One event to produce: its call's index, its key (the user id) and its JSON."""

    index: int
    user_id: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Translation:
    accepted: list[Accepted]
    refused: list[Refusal]


def translate_request(route: str, raw: bytes, received_ms: int) -> Translation:
    """The events of one request body to `/v1/<route>`; raise `CallRefused` when the body as a
    whole is unusable (too large, not JSON, not an object, no `batch` list)."""
    limit = MAX_BATCH_BYTES if route == "batch" else MAX_CALL_BYTES
    if len(raw) > limit:
        raise CallRefused(
            None, f"the body is {len(raw):,} bytes; the limit of /v1/{route} is {limit:,}", too_large=True
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CallRefused(None, f"the body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise CallRefused(None, f"the body must be a JSON object; got {json_kind(body)}")
    if route != "batch":
        return translate_calls([body], received_ms, call_type=route)
    calls = body.get("batch")
    if not isinstance(calls, list) or not calls:
        raise CallRefused("batch", f"`batch` must be a non-empty list of calls; got {shown(calls)}")
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise CallRefused("context", f"`context` must be an object; got {json_kind(context)}")
    sent_at = body.get("sentAt")
    sent_at_ms = None if sent_at is None else _instant(sent_at, "sentAt")
    return translate_calls(calls, received_ms, sent_at_ms=sent_at_ms, context=context)


def translate_calls(
    calls: list[Any],
    received_ms: int,
    *,
    call_type: str | None = None,
    sent_at_ms: int | None = None,
    context: Mapping[str, Any] | None = None,
) -> Translation:
    """Each call as an event or a refusal. `call_type` is the route's (None: each call's `type`);
    `sent_at_ms` and `context` are a batch's, which its calls' own override."""
    accepted: list[Accepted] = []
    refused: list[Refusal] = []
    for index, call in enumerate(calls):
        try:
            doc = call_to_event(call, received_ms, call_type=call_type, sent_at_ms=sent_at_ms, context=context)
        except CallRefused as e:
            refused.append(Refusal(index, e.field, e.problem, e.too_large))
            continue
        accepted.append(Accepted(index, doc["user_id"], orjson.dumps(doc)))
    return Translation(accepted, refused)


def call_to_event(
    call: Any,
    received_ms: int,
    *,
    call_type: str | None = None,
    sent_at_ms: int | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One call as a valid event document; raise `CallRefused` naming the first problem."""
    if not isinstance(call, dict):
        raise CallRefused(None, f"each call must be a JSON object; got {json_kind(call)}")
    size = len(orjson.dumps(call))
    if size > MAX_CALL_BYTES:
        raise CallRefused(None, f"the call is {size:,} bytes; the limit per call is {MAX_CALL_BYTES:,}", too_large=True)
    kind = call_type or call.get("type")
    if kind not in CALL_BUILDERS:
        raise CallRefused("type", f"`type` must be one of {', '.join(CALL_TYPES)}; got {shown(kind)}")
    user_id = _user_id(call)
    merged = {**(context or {}), **object_field(call, "context")}
    event_type, properties, people = CALL_BUILDERS[kind](call, merged)
    timestamp_ms = _timestamp_ms(call, received_ms, sent_at_ms)
    message_id = call.get("messageId")
    doc = {
        "event_id": message_id if message_id is not None else _derived_id(kind, user_id, timestamp_ms, call),
        "user_id": user_id,
        "type": event_type,
        "timestamp": timestamp_ms,
        "properties": properties,
    }
    contact = tidemail_context(merged, people)
    if contact:
        doc["context"] = contact
    try:
        validate_event(doc, None)
    except InvalidEvent as e:
        raise _in_segment_terms(str(e)) from e
    return doc


def _user_id(call: Mapping[str, Any]) -> Any:
    user_id = call.get("userId")
    if user_id is None and call.get("anonymousId") is not None:
        raise CallRefused(
            "userId", "`userId` is required: Tidemail keeps state per user, and a call with only `anonymousId` has none"
        )
    return user_id


def _timestamp_ms(call: Mapping[str, Any], received_ms: int, sent_at_ms: int | None) -> int:
    """Segment's rule: `timestamp` corrected for the client's clock skew when `sentAt` (the
    call's, else its batch's) is known: receivedAt - (sentAt - timestamp). Without a
    `timestamp`, when it arrived."""
    value = call.get("timestamp")
    if value is None:
        return received_ms
    timestamp_ms = _instant(value, "timestamp")
    sent_at = call.get("sentAt")
    if sent_at is not None:
        sent_at_ms = _instant(sent_at, "sentAt")
    if sent_at_ms is None:
        return timestamp_ms
    return received_ms - (sent_at_ms - timestamp_ms)


def _instant(value: Any, name: str) -> int:
    try:
        return parse_timestamp(value)
    except InvalidEvent as e:
        raise CallRefused(name, str(e).replace("`timestamp`", f"`{name}`")) from e


def _derived_id(kind: str, user_id: Any, timestamp_ms: int, call: Mapping[str, Any]) -> str:
    """An event id for a call without `messageId`: the same call at the same instant gets the
    same id, so an exact resend is applied once."""
    content = [kind, user_id, timestamp_ms, call.get("event"), call.get("properties"), call.get("traits")]
    return "segment-" + hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


# The contract's names for what a Segment call names otherwise, as prefixes of a field.
_SEGMENT_NAMES: Final = (
    ("event_id", "messageId"),
    ("user_id", "userId"),
    ("properties.item.", "properties."),
    ("properties.items", "properties.products"),
    ("properties.traits", "traits"),
)
_FIELD = re.compile(r"`([^`]+)`")


def _in_segment_terms(message: str) -> CallRefused:
    """A validation error of the contract, naming the field as the caller sent it."""
    match = _FIELD.search(message)
    if match is None:
        return CallRefused(None, message)
    field = match.group(1)
    for contract, segment in _SEGMENT_NAMES:
        if field.startswith(contract):
            renamed = segment + field[len(contract) :]
            return CallRefused(renamed, message.replace(f"`{field}`", f"`{renamed}`", 1))
    return CallRefused(field, message)
