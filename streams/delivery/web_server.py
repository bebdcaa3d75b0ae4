"""The deliverer's small web server: /health, /metrics, and /admin/clock only when clock
control is allowed (tests, demos)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.delivery.deliverer import Deliverer

DELIVERER = web.AppKey("deliverer", Deliverer)


def web_app(deliverer: Deliverer) -> web.Application:
    app = web.Application()
    app[DELIVERER] = deliverer
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    if deliverer.config.allow_clock_control:
        app.router.add_post("/admin/clock", _advance_clock)
    return app


async def _health(request: web.Request) -> web.Response:
    deliverer = request.app[DELIVERER]
    body = {"status": "ok", "assigned_partitions": sorted(deliverer.assigned), "pending": deliverer.pending}
    return web.json_response(body)


async def _metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def _advance_clock(request: web.Request) -> web.Response:
    deliverer = request.app[DELIVERER]
    body = await request.json()
    deliverer.clock.advance(int(body["advance_ms"]))
    return web.json_response({"now_ms": deliverer.clock.now_ms()})
