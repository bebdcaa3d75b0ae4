"""Segments through the real broker: entries on the clock with no new event, exits on events."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
import pytest

from tests.factories import encoded, event_doc
from tests.integration.harness import WorkerHarness, produce, read_topic

pytestmark = pytest.mark.integration

HOUR = 3_600_000
DAY = 24 * HOUR


async def changes_for(worker: WorkerHarness, user: str) -> list[dict[str, Any]]:
    s = worker.settings
    records = await read_topic(s.kafka_bootstrap, s.segment_changes_topic)
    return [c for c in (orjson.loads(r.value) for r in records) if c["user_id"] == user]


async def send(worker: WorkerHarness, doc: dict[str, Any]) -> None:
    await produce(
        worker.settings.kafka_bootstrap, worker.settings.events_topic, [(doc["user_id"].encode(), encoded(doc))]
    )


async def test_cart_abandoner_enters_on_the_clock_and_exits_on_purchase(worker: WorkerHarness) -> None:
    await worker.start()
    now = int(time.time() * 1000)
    await send(worker, event_doc("cart_add", "carol", event_id="add", ts=now))
    await worker.wait_until_caught_up()
    _, profile = await worker.get("/users/carol")
    assert "cart_abandoners" not in profile["segments"]
    assert profile["next_check_ms"] == now + HOUR

    await worker.advance_clock(HOUR + 1_000)
    await worker.wait_for(lambda p: "cart_abandoners" in p["segments"], "/users/carol", timeout=15)
    entered = [c for c in await changes_for(worker, "carol") if c["segment"] == "cart_abandoners"]
    assert [(c["change"], c["cause"]) for c in entered] == [("entered", "clock")]
    _, listing = await worker.get("/segments")
    assert {s["name"]: s["size"] for s in listing["segments"]}["cart_abandoners"] == 1
    _, detail = await worker.get("/segments/cart_abandoners")
    assert detail["sample"] == ["carol"] and detail["definition"] == {"cart": {"idle_for": "1h"}}

    await send(worker, event_doc("purchase", "carol", event_id="buy", ts=now + HOUR + 2_000))
    await worker.wait_until_caught_up()
    _, profile = await worker.get("/users/carol")
    assert "cart_abandoners" not in profile["segments"]
    changes = [
        (c["change"], c["cause"]) for c in await changes_for(worker, "carol") if c["segment"] == "cart_abandoners"
    ]
    assert changes == [("entered", "clock"), ("exited", "buy")]
    _, listing = await worker.get("/segments")
    assert {s["name"]: s["size"] for s in listing["segments"]}["cart_abandoners"] == 0


async def test_user_becomes_lapsed_on_the_clock(worker: WorkerHarness) -> None:
    await worker.start()
    now = int(time.time() * 1000)
    await send(worker, event_doc("page_view", "larry", event_id="view", ts=now))
    await worker.wait_until_caught_up()
    await worker.advance_clock(30 * DAY + 1_000)
    await worker.wait_for(lambda p: "lapsed" in p["segments"], "/users/larry", timeout=15)
    changes = [(c["segment"], c["change"], c["cause"]) for c in await changes_for(worker, "larry")]
    assert ("new_visitors", "entered", "view") in changes
    assert ("new_visitors", "exited", "clock") in changes
    assert changes[-1] == ("lapsed", "entered", "clock")
    metrics = await _text(worker.url + "/metrics")
    assert 'tidemail_segment_changes_total{change="entered",segment="lapsed"} 1.0' in metrics


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.text()
