"""Any worker answers for any user: requests about another worker's users are forwarded to
it with the caller's token, never twice, and GET /segments adds up every worker's sizes."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from prometheus_client import REGISTRY

from app.api.forwarding import ANSWERED_BY, FORWARDED_BY
from streams.core.partitioning import partition_of
from streams.core.routing import FleetView
from tests.unit.app.api_support import (
    API_TOKEN,
    OWNED,
    PARTITIONS,
    Client,
    bearer,
    in_memory_services,
    serving,
    stored_users,
    two_workers,
)

USERS = [state.user_id for state in stored_users()]
THEIRS = [user for user in USERS if partition_of(user.encode(), PARTITIONS) not in OWNED]
OURS = [user for user in USERS if user not in THEIRS]
PATHS = ["/users/{}", "/users/{}/recommendations?k=3", "/users/{}/predictions", "/users/{}/export"]


def forwards(outcome: str) -> float:
    return REGISTRY.get_sample_value("tidemail_api_forwards_total", {"outcome": outcome}) or 0.0


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[Client, Client]]:
    async with two_workers() as (clients, _):
        yield clients


async def test_either_worker_answers_for_every_user_the_same(fleet: tuple[Client, Client]) -> None:
    first, second = fleet
    assert THEIRS and OURS
    for user in USERS:
        answers = []
        for client in (first, second):
            async with client.get(f"/users/{user}", headers=bearer(API_TOKEN)) as response:
                assert response.status == 200, (user, await response.text())
                answers.append(await response.json())
        assert answers[0] == answers[1]


@pytest.mark.parametrize("path", PATHS)
async def test_each_route_about_a_user_is_answered_by_the_owner(fleet: tuple[Client, Client], path: str) -> None:
    first, second = fleet
    async with first.get(path.format(THEIRS[0]), headers=bearer(API_TOKEN)) as response:
        assert response.status == 200
        assert response.headers[ANSWERED_BY] == str(second.make_url("")).rstrip("/")
        assert response.content_type == "application/json"
    async with second.get(path.format(THEIRS[0]), headers=bearer(API_TOKEN)) as response:
        assert response.status == 200 and ANSWERED_BY not in response.headers


async def test_a_preview_for_another_workers_user_is_rendered_by_the_owner(fleet: tuple[Client, Client]) -> None:
    first, _ = fleet
    path = f"/templates/welcome/preview?user_id={THEIRS[0]}&format=json"
    async with first.get(path, headers=bearer(API_TOKEN)) as response:
        assert response.status == 200 and ANSWERED_BY in response.headers
        assert (await response.json())["template"] == "welcome"


async def test_the_callers_token_is_checked_before_anything_is_forwarded(fleet: tuple[Client, Client]) -> None:
    first, _ = fleet
    answered = forwards("answered")
    for header in ({}, bearer("not-a-token")):
        assert (await first.get(f"/users/{THEIRS[0]}", headers=header)).status == 401
    assert (await first.get(f"/users/{'x' * 300}", headers=bearer(API_TOKEN))).status == 400
    assert forwards("answered") == answered


async def test_a_forwarded_request_is_never_forwarded_again(fleet: tuple[Client, Client]) -> None:
    first, _ = fleet
    answered = forwards("answered")
    headers = {**bearer(API_TOKEN), FORWARDED_BY: "http://127.0.0.1:1"}
    async with first.get(f"/users/{THEIRS[0]}", headers=headers) as response:
        assert response.status == 421
        assert "not owned by this worker" in (await response.json())["error"]
    assert forwards("answered") == answered


async def test_an_owner_that_does_not_answer_is_a_503_with_retry_after() -> None:
    gone = closed_port_url()
    services = in_memory_services(fleet=lambda: FleetView("http://127.0.0.1:2", dict.fromkeys(range(PARTITIONS), gone)))
    unreachable = forwards("unreachable")
    async with TestClient(TestServer(serving(services))) as client:
        async with client.get(f"/users/{THEIRS[0]}", headers=bearer(API_TOKEN)) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
        # One try, and one more after the layout is read again.
        assert forwards("unreachable") == unreachable + 2
        # The worker's own users are answered as ever.
        assert (await client.get(f"/users/{OURS[0]}/predictions", headers=bearer(API_TOKEN))).status == 200


async def test_in_a_rebalance_a_stale_owner_refuses_and_the_request_goes_to_the_new_one() -> None:
    moved: list[bool] = []
    urls: dict[str, str] = {}

    @web.middleware
    async def notice_refusal(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        moved.append(response.status == 421)
        return response

    def layout() -> FleetView:
        owner = urls["new"] if any(moved) else urls["stale"]
        return FleetView(urls["asked"], {p: urls["asked"] if p in OWNED else owner for p in range(PARTITIONS)})

    stale_app = serving(in_memory_services(frozenset(), fleet=layout))
    stale_app.middlewares.insert(0, notice_refusal)
    servers = {
        "asked": TestServer(serving(in_memory_services(OWNED, fleet=layout))),
        "stale": TestServer(stale_app),
        "new": TestServer(serving(in_memory_services(frozenset(range(PARTITIONS)) - OWNED, fleet=layout))),
    }
    clients = {name: TestClient(server) for name, server in servers.items()}
    for name, client in clients.items():
        await client.start_server()
        urls[name] = str(client.make_url("")).rstrip("/")
    try:
        async with clients["asked"].get(f"/users/{THEIRS[0]}", headers=bearer(API_TOKEN)) as response:
            assert response.status == 200
            assert response.headers[ANSWERED_BY] == urls["new"]
        assert moved == [True]
    finally:
        for client in clients.values():
            await client.close()


def planted_sizes(clients: tuple[Client, Client], services: Any) -> None:
    first, second = services
    first.segment_sizes.update({0: Counter(new_visitors=2), 1: Counter(new_visitors=1, lapsed=5)})
    second.segment_sizes.update({2: Counter(new_visitors=4), 3: Counter(lapsed=1)})


async def test_segment_sizes_are_the_fleets_whichever_worker_is_asked() -> None:
    async with two_workers() as (clients, services):
        planted_sizes(clients, services)
        for client in clients:
            body = await (await client.get("/segments", headers=bearer(API_TOKEN))).json()
            sizes = {segment["name"]: segment["size"] for segment in body["segments"]}
            assert sizes["new_visitors"] == 7 and sizes["lapsed"] == 6
            assert body["complete"] and all(worker["answered"] for worker in body["workers"])
            assert sorted(p for worker in body["workers"] for p in worker["partitions"]) == [0, 1, 2, 3]
            shown = await (await client.get("/segments/lapsed", headers=bearer(API_TOKEN))).json()
            assert shown["size"] == 6 and shown["complete"]
        own = await (await clients[0].get("/segments?scope=worker", headers=bearer(API_TOKEN))).json()
        assert {s["name"]: s["size"] for s in own["segments"]}["new_visitors"] == 3
        assert own["partitions_missing"] == [2, 3] and not own["complete"]


async def test_segment_sizes_say_which_worker_did_not_answer() -> None:
    gone = closed_port_url()
    owners = {p: "http://127.0.0.1:2" if p in OWNED else gone for p in range(PARTITIONS)}
    services = in_memory_services(fleet=lambda: FleetView("http://127.0.0.1:2", owners))
    services.segment_sizes.update({0: Counter(new_visitors=2)})
    async with TestClient(TestServer(serving(services))) as client:
        body = await (await client.get("/segments", headers=bearer(API_TOKEN))).json()
    assert {s["name"]: s["size"] for s in body["segments"]}["new_visitors"] == 2
    assert body["workers"] == [
        {"url": "http://127.0.0.1:2", "answered": True, "partitions": [0]},
        {"url": gone, "answered": False, "partitions": []},
    ]
    assert body["partitions_missing"] == [1, 2, 3] and not body["complete"]
