"""What operators and the benchmark call: health, readiness, Prometheus metrics, processing stats,
and the clock that tests and demos move."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.params import json_object, whole_number_field
from app.api.services import json_response, services

# A year at a time at most: the clock only moves forward, and dates far enough ahead overflow.
MAX_CLOCK_ADVANCE_MS = 366 * 86_400_000


async def health(request: web.Request) -> web.Response:
    owned = sorted(services(request).ownership.owned)
    return json_response({"status": "ok", "owned_partitions": owned})


async def ready(request: web.Request) -> web.Response:
    """200 when the worker should get traffic, 503 naming why not (a probe reads the status)."""
    is_ready, body = services(request).readiness.report()
    return json_response(body, 200 if is_ready else 503)


async def prometheus_metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def stats(request: web.Request) -> web.Response:
    """Processed count, and with `?percentiles` latency percentiles since the last reset;
    the benchmark reads these."""
    return json_response(services(request).latency.report("percentiles" in request.query))


async def reset_stats(request: web.Request) -> web.Response:
    services(request).latency.reset()
    return json_response({"reset": True})


async def advance_clock(request: web.Request) -> web.Response:
    app = services(request)
    advance_ms = whole_number_field(await json_object(request), "advance_ms", 0, MAX_CLOCK_ADVANCE_MS)
    app.clock.advance(advance_ms)
    return json_response({"now_ms": app.clock.now_ms()})
