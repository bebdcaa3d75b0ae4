"""Segment's HTTP tracking API (`POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/batch`) in
front of the events topic, with `/health` and `/metrics`.

A request is answered once the broker has acknowledged every event it accepted, so a 200
means the events are durable; the calls of a batch that break the contract are named in a
400 while the others are still produced. The mapping is `streams.core.tracking`'s.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import orjson
from aiohttp import hdrs, web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.core.tracking import MAX_BATCH_BYTES, Accepted, Translation, translate_request
from streams.core.tracking_calls import CallRefused
from streams.ingest.config import IngestConfig
from streams.ingest.producer import EventProducer
from streams.metrics import INGEST_EVENTS, INGEST_REQUEST_SECONDS, INGEST_REQUESTS

log = logging.getLogger(__name__)

ROUTES = ("track", "identify", "page", "batch")
# Problems quoted in a refusal's `message` (Segment's clients log only that); `errors` has all.
QUOTED_PROBLEMS = 3


class EventSink(Protocol):
    """Where accepted events go: the events topic, or a test's list."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def produce(self, events: Sequence[Accepted]) -> None: ...


CONFIG = web.AppKey("config", IngestConfig)
SINK = web.AppKey("sink", EventSink)


def ingest_app(config: IngestConfig, sink: EventSink | None = None) -> web.Application:
    """The ingestion server's app; it starts and stops `sink` (default: the events topic's producer)."""
    app = web.Application(client_max_size=MAX_BATCH_BYTES)
    app[CONFIG] = config
    app[SINK] = sink or EventProducer(config.kafka_bootstrap, config.events_topic)
    app.cleanup_ctx.append(_sink_lifecycle)
    for route in ROUTES:
        app.router.add_post(f"/v1/{route}", _handler(route))
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    return app


async def _sink_lifecycle(app: web.Application) -> AsyncIterator[None]:
    await app[SINK].start()
    yield
    await app[SINK].stop()


def _handler(route: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await _answer(request, route)
        INGEST_REQUESTS.labels(route, str(response.status)).inc()
        INGEST_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    return handle


async def _answer(request: web.Request, route: str) -> web.Response:
    if not authorized(request.headers.get(hdrs.AUTHORIZATION), request.app[CONFIG].write_keys):
        return _error(
            401,
            "invalid_write_key",
            "send a write key from TIDEMAIL_WRITE_KEYS as the HTTP Basic user name, with an empty password",
            headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="tidemail"'},
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        return _error(413, "too_large", e.text or "the body is too large")
    try:
        translation = translate_request(route, raw, int(time.time() * 1000))
    except CallRefused as e:
        if e.too_large:
            return _error(413, "too_large", e.problem)
        return _error(400, "invalid_request", e.problem, field=e.field)
    try:
        await request.app[SINK].produce(translation.accepted)
    except KafkaError as e:
        INGEST_EVENTS.labels("failed").inc(len(translation.accepted))
        log.warning("could not produce %d events to Kafka: %r", len(translation.accepted), e)
        return _error(503, "broker_unavailable", f"the events could not be written to Kafka ({e!r}); retry")
    _count(translation)
    if not translation.refused:
        return _json({"success": True, "accepted": len(translation.accepted)})
    return _refusals(translation, route)


def authorized(header: str | None, write_keys: tuple[str, ...]) -> bool:
    """Whether an `Authorization` header is HTTP Basic with one of `write_keys` as the user name
    (Segment's scheme; the password is ignored). Every key is compared, in constant time."""
    if not header or not write_keys:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user = base64.b64decode(credentials.strip(), validate=True).split(b":", 1)[0]
    except (binascii.Error, ValueError):
        return False
    matched = False
    for key in write_keys:
        matched |= hmac.compare_digest(user, key.encode())
    return matched


def _count(translation: Translation) -> None:
    if translation.accepted:
        INGEST_EVENTS.labels("accepted").inc(len(translation.accepted))
    too_large = sum(refusal.too_large for refusal in translation.refused)
    if too_large:
        INGEST_EVENTS.labels("too_large").inc(too_large)
    if len(translation.refused) > too_large:
        INGEST_EVENTS.labels("invalid").inc(len(translation.refused) - too_large)


def _refusals(translation: Translation, route: str) -> web.Response:
    """400 naming each refused call (413 when one was over the size limit), and the accepted ones."""
    refused = translation.refused
    if route == "batch":
        quoted = "; ".join(f"[{r.index}] {r.problem}" for r in refused[:QUOTED_PROBLEMS])
        more = f"; and {len(refused) - QUOTED_PROBLEMS} more" if len(refused) > QUOTED_PROBLEMS else ""
        calls = len(refused) + len(translation.accepted)
        message = f"{len(refused)} of {calls} calls refused, the others accepted: {quoted}{more}"
    else:
        message = refused[0].problem
    too_large = any(r.too_large for r in refused)
    body = {
        "success": False,
        "code": "too_large" if too_large else "invalid_events",
        "message": message,
        "errors": [{"index": r.index, "field": r.field, "error": r.problem} for r in refused],
        "accepted": [event.index for event in translation.accepted],
    }
    return _json(body, status=413 if too_large else 400)


def _error(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"success": False, "code": code, "message": message, "field": field}
    return _json(body, status=status, headers=headers)


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


async def _health(request: web.Request) -> web.Response:
    return _json({"status": "ok", "topic": request.app[CONFIG].events_topic})


async def _metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
