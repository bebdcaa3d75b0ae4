"""POST /users/{id}/erase (admin) publishes an `erase` event; GET /users/{id}/export (API
token) answers everything a worker holds about the user."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.api import ApiServices, add_routes
from app.api.forwarding import FORWARDED_BY
from streams.core.events import validate_event
from streams.core.partitioning import partition_of
from tests.unit.app.api_support import ADMIN_TOKEN, API_TOKEN, OWNED, PARTITIONS, bearer, in_memory_services

Client = TestClient[web.Request, web.Application]
OWNED_USERS = [f"u{n}" for n in range(12) if partition_of(f"u{n}".encode(), PARTITIONS) in OWNED]
NOT_OWNED = next(f"u{n}" for n in range(12) if f"u{n}" not in OWNED_USERS)
# Owned by this worker, and never seen.
UNKNOWN = next(f"ghost{n}" for n in range(100) if partition_of(f"ghost{n}".encode(), PARTITIONS) in OWNED)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Client, ApiServices]]:
    services = in_memory_services()
    web_app = web.Application()
    add_routes(web_app, services)
    async with TestClient(TestServer(web_app)) as client:
        yield client, services


async def test_erase_publishes_an_erase_event_keyed_by_the_user_for_an_admin_token_only(
    api: tuple[Client, ApiServices],
) -> None:
    client, services = api
    assert (await client.post("/users/u1/erase", headers=bearer(API_TOKEN))).status == 403
    assert (await client.post("/users/u1/erase")).status == 401
    events: list[tuple[str, bytes]] = services.events.submitted  # type: ignore[attr-defined]
    assert events == []
    response = await client.post("/users/u1/erase", headers=bearer(ADMIN_TOKEN))
    assert response.status == 202
    answer = await response.json()
    [(key, value)] = events
    event = validate_event(orjson.loads(value), key.encode())
    assert (key, event.type, event.properties) == ("u1", "erase", {"source": "api"})
    assert answer == {"user_id": "u1", "event_id": event.event_id, "status": "accepted"}
    assert 0 <= services.clock.now_ms() - event.timestamp_ms < 5_000


async def test_erase_refuses_a_user_id_the_event_contract_refuses(api: tuple[Client, ApiServices]) -> None:
    client, services = api
    response = await client.post(f"/users/{'x' * 201}/erase", headers=bearer(ADMIN_TOKEN))
    assert response.status == 400
    assert (await response.json())["field"] == "user_id"
    assert services.events.submitted == []  # type: ignore[attr-defined]


async def test_export_holds_the_whole_state_experiments_and_cached_predictions(
    api: tuple[Client, ApiServices],
) -> None:
    client, services = api
    user = OWNED_USERS[0]
    assert (await client.get(f"/users/{user}/predictions", headers=bearer(API_TOKEN))).status == 200
    response = await client.get(f"/users/{user}/export", headers=bearer(API_TOKEN))
    assert response.status == 200
    export = await response.json()
    assert export["user_id"] == user
    assert export["partition"] in OWNED
    assert export["state"]["traits"] == {"email": f"{user}@example.com", "first_name": "Ada"}
    assert export["state"]["segments"] == {"new_visitors": 1_000}
    # Every field the worker stores, not a summary.
    assert {"recent_event_ids", "flow_runs", "experiment_jobs", "subscriptions", "engagement_hours"} <= set(
        export["state"]
    )
    assert set(export["experiments"]) == set(services.processor.experiments)
    assert all(set(entry) == {"held_out", "variant"} for entry in export["experiments"].values())
    [(field, cached)] = export["cached_predictions"].items()
    assert field.startswith("predictions:") and cached["user_id"] == user
    assert services.settings.jobs_topic in export["elsewhere"]


async def test_export_answers_404_for_a_user_not_held_and_421_for_another_workers_when_forwarded(
    api: tuple[Client, ApiServices],
) -> None:
    client, _ = api
    assert (await client.get(f"/users/{UNKNOWN}/export", headers=bearer(API_TOKEN))).status == 404
    forwarded = {**bearer(API_TOKEN), FORWARDED_BY: "http://127.0.0.1:6067"}
    assert (await client.get(f"/users/{NOT_OWNED}/export", headers=forwarded)).status == 421
    assert (await client.get(f"/users/{OWNED_USERS[0]}/export")).status == 401
