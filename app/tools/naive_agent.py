"""The benchmark's baseline: the textbook Faust agent, one event and one table write at a time.

It runs the same validation and state transition as the hot path, so the
difference measured is Faust's per-event machinery, not the business logic.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from app.settings import Settings
from streams.core.errors import InvalidEvent
from streams.core.events import parse_event
from streams.core.state import StatePolicy, UserState, apply
from streams.core.state_codec import decode_state, encode_state


def create_naive_app(settings: Settings) -> faust.App:
    app = faust.App(
        f"{settings.app_id}-naive",
        broker=settings.kafka_url,
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        # Faust listens on all interfaces unless told otherwise.
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
    )
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    users = app.Table("users", partitions=settings.partitions, key_type=bytes, value_type=bytes)
    policy = StatePolicy()
    progress: dict[str, Any] = {"processed": 0, "latencies_ms": deque(maxlen=200_000)}

    @app.agent(events)
    async def process(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            try:
                parsed = parse_event(event.value, event.key, settings.max_event_bytes)
            except InvalidEvent:
                progress["processed"] += 1
                continue
            raw = users.get(parsed.user_id.encode())
            state = decode_state(raw) if raw is not None else UserState(parsed.user_id)
            users[parsed.user_id.encode()] = encode_state(apply(state, parsed, policy))
            progress["processed"] += 1
            progress["latencies_ms"].append(time.time() * 1000 - event.message.timestamp * 1000)
            yield None

    _add_stats_pages(app, progress)
    return app


def _add_stats_pages(app: faust.App, progress: dict[str, Any]) -> None:
    """The progress the benchmark polls, as the hot path's worker reports it."""

    @app.page("/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            samples = progress["latencies_ms"]
            body: dict[str, Any] = {"processed": progress["processed"], "latency_samples": len(samples)}
            # Sorting 200k samples costs tens of ms: only when asked, not on every progress poll.
            if "percentiles" in request.query and len(samples) >= 2:
                latencies = sorted(samples)
                body["latency_p50_ms"] = latencies[len(latencies) // 2]
                body["latency_p99_ms"] = latencies[int(len(latencies) * 0.99)]
            return self.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/stats/reset")
    class ResetStats(View):
        async def post(self, request: Request) -> Response:
            progress["latencies_ms"].clear()
            return self.bytes(b"{}", content_type="application/json")


if __name__ == "__main__":
    naive = create_naive_app(Settings.from_env())
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    naive.main()
