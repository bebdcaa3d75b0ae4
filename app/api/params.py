"""Reading a request's parameters and body. A malformed one is a 400 that names the field
and the problem, never a 500."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from streams import metrics
from streams.core.errors import shown
from streams.core.events import MAX_ID_LENGTH
from streams.kafka.store import is_user_key

# Longer digit strings are refused before `int` (which refuses more than 4,300 digits itself).
MAX_DIGITS = 18


class BadRequest(Exception):
    """A parameter or body that breaks the route's contract."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"`{field}` {problem}")
        self.field = field


@web.middleware
async def bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as e:
        metrics.API_REFUSALS.labels("bad_request").inc()
        body = orjson.dumps({"error": str(e), "field": e.field})
        return web.Response(body=body, status=400, content_type="application/json")


def whole_number(request: web.Request, field: str, default: int, low: int, high: int) -> int:
    """Query parameter `field`, a whole number from `low` to `high`; `default` when absent."""
    raw = request.query.get(field)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS else None
    if value is None or not low <= value <= high:
        raise BadRequest(field, f"must be a whole number from {low} to {high}; got {shown(raw)}")
    return value


def choice(request: web.Request, field: str, choices: tuple[str, ...]) -> str:
    """Query parameter `field`, one of `choices`; the first when absent."""
    raw = request.query.get(field, choices[0])
    if raw not in choices:
        raise BadRequest(field, f"must be one of {', '.join(choices)}; got {shown(raw)}")
    return raw


def checked_user_id(raw: str) -> str:
    """A user id as the event contract allows it, and never a key the store keeps for itself."""
    if not raw or len(raw) > MAX_ID_LENGTH:
        raise BadRequest("user_id", f"must be 1 to {MAX_ID_LENGTH} characters; got {shown(raw)}")
    if not is_user_key(raw.encode("utf-8", "surrogateescape")):
        raise BadRequest("user_id", f"must not start with `__faust` or a byte 0 or 1; got {shown(raw)}")
    return raw


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body, which must be a JSON object."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest("body", f"must be a JSON object; got {shown(raw)}, which is not JSON") from e
    if not isinstance(body, dict):
        raise BadRequest("body", f"must be a JSON object; got {shown(body)}")
    return body


def whole_number_field(body: dict[str, Any], field: str, low: int, high: int) -> int:
    """Member `field` of a JSON body, a whole number (not a string, not `2.0`) from `low` to `high`."""
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(field, f"must be a whole number from {low} to {high}; got {shown(value)}")
    return value
