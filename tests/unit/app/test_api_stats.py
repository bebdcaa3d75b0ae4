from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.api import ApiServices, add_routes
from app.worker_stats import LatencySamples, RecoQuality
from streams.core.batch import BatchResult
from tests.unit.app.api_support import ADMIN_TOKEN, bearer


@pytest.fixture
async def api() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], ApiServices]]:
    unused: Any = None
    settings: Any = SimpleNamespace(
        allow_clock_control=False,
        reco_weights={"model": 1.0},
        api_bearer_tokens=(),
        admin_bearer_tokens=(ADMIN_TOKEN,),
    )
    snapshots: Any = SimpleNamespace(status=lambda: {"snapshot_offset": -1})
    processor: Any = SimpleNamespace(item_model=SimpleNamespace(propensity_quality={}))
    services = ApiServices(
        settings=settings,
        clock=unused,
        processor=processor,
        segments=unused,
        ownership=unused,
        users=unused,
        segment_sizes=unused,
        snapshots=snapshots,
        prediction_cache=unused,
        events=unused,
        latency=LatencySamples(),
        reco_quality=RecoQuality(),
        readiness=unused,
        fleet=unused,
    )
    web_app = web.Application()
    add_routes(web_app, services)
    # The admin token: the tests reset the stats.
    async with TestClient(TestServer(web_app), headers=bearer(ADMIN_TOKEN)) as client:
        yield client, services


async def test_stats_count_every_event_and_give_percentiles_of_samples_since_the_reset(
    api: tuple[TestClient[web.Request, web.Application], ApiServices],
) -> None:
    client, services = api
    services.latency.consumed([float(n) for n in range(1, 101)])
    assert await (await client.get("/stats")).json() == {"processed": 100, "latency_samples": 100}
    body = await (await client.get("/stats?percentiles")).json()
    assert body == {"processed": 100, "latency_samples": 100, "latency_p50_ms": 50.5, "latency_p99_ms": 99.99}
    assert await (await client.post("/stats/reset")).json() == {"reset": True}
    services.latency.consumed([3.0])
    assert await (await client.get("/stats?percentiles")).json() == {"processed": 101, "latency_samples": 1}


async def test_models_report_the_recommenders_hit_rates_over_every_batch(
    api: tuple[TestClient[web.Request, web.Application], ApiServices],
) -> None:
    client, services = api
    fresh = Counter(new_predictions=2, new_model=1, new_popular=0, new_item_to_item=1)
    for quality in (Counter(predictions=3, model=2, popular=1), Counter(), Counter(predictions=1, model=1), fresh):
        result = BatchResult()
        result.counts.reco_quality = quality
        services.reco_quality.observe(result)
    body = await (await client.get("/models")).json()
    expected = {
        "predictions": 4,
        "hit_rate_at_10": {"model": 0.75, "popular": 0.25},
        "new_to_user": {"predictions": 2, "hit_rate_at_10": {"model": 0.5, "popular": 0.0, "item_to_item": 0.5}},
    }
    assert body["recommendations"] == {"snapshot_offset": -1, "weights": {"model": 1.0}, "quality": expected}


async def test_models_report_no_hit_rate_before_any_prediction(
    api: tuple[TestClient[web.Request, web.Application], ApiServices],
) -> None:
    client, _ = api
    body = await (await client.get("/models")).json()
    assert body["recommendations"]["quality"] == {
        "predictions": 0,
        "hit_rate_at_10": {"model": None, "popular": None},
        "new_to_user": {"predictions": 0, "hit_rate_at_10": {"model": None, "popular": None, "item_to_item": None}},
    }
