"""Who may call which route of the worker's API: public probes and the unsubscribe link,
bearer tokens for the rest, admin tokens for the admin routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from app.api import add_routes
from app.api.auth import Access, Credentials
from app.api.routes import CLOCK_ROUTES, ROUTES
from app.settings import Secret, Settings
from tests.unit.app.api_support import ADMIN_TOKEN, API_TOKEN, bearer, in_memory_services

Client = TestClient[web.Request, web.Application]

# One request per protected route, each answered 200 when the token is right.
API_REQUESTS = [
    ("GET", "/stats"),
    ("GET", "/users/u1"),
    ("GET", "/users/u1/recommendations"),
    ("GET", "/users/u1/predictions"),
    ("GET", "/models"),
    ("GET", "/experiments"),
    ("GET", "/segments"),
    ("GET", "/segments/new_visitors"),
    ("GET", "/templates"),
    ("GET", "/templates/welcome/preview"),
    ("GET", "/schemas"),
    ("GET", "/schemas/event"),
]
ADMIN_REQUESTS = [("POST", "/stats/reset"), ("POST", "/admin/clock")]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    web_app = web.Application()
    add_routes(web_app, in_memory_services(api_tokens=Secret(f"old-token, {API_TOKEN} ,")))
    async with TestClient(TestServer(web_app)) as test_client:
        yield test_client


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("tidemail_api_refusals_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize(("method", "path"), [*API_REQUESTS, *ADMIN_REQUESTS])
async def test_a_request_without_a_token_is_401_with_a_bearer_challenge(client: Client, method: str, path: str) -> None:
    before = refusals("no_token")
    response = await client.request(method, path, json={"advance_ms": 1})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tidemail"'
    assert "Authorization: Bearer" in (await response.json())["error"]
    assert refusals("no_token") == before + 1


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token-0123456789",
        f"Bearer {API_TOKEN[:-1]}",
        f"Bearer {API_TOKEN}x",
        f"Basic {API_TOKEN}",
        "Bearer",
        "bearer",
    ],
)
async def test_a_wrong_or_malformed_token_is_401(client: Client, header: str) -> None:
    response = await client.get("/users/u1", headers={"Authorization": header})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_wrong_token_is_told_invalid_and_counted(client: Client) -> None:
    before = refusals("bad_token")
    response = await client.get("/users/u1", headers=bearer("wrong-token-0123456789"))
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tidemail", error="invalid_token"'
    assert refusals("bad_token") == before + 1


@pytest.mark.parametrize(("method", "path"), API_REQUESTS)
async def test_every_listed_api_token_opens_the_api_routes(client: Client, method: str, path: str) -> None:
    for token in ("old-token", API_TOKEN, ADMIN_TOKEN):
        response = await client.request(method, path, headers=bearer(token))
        assert response.status == 200, (token, await response.text())


@pytest.mark.parametrize(("method", "path"), ADMIN_REQUESTS)
async def test_admin_routes_are_403_for_an_api_token_and_open_to_an_admin_token(
    client: Client, method: str, path: str
) -> None:
    before = refusals("not_admin")
    response = await client.request(method, path, headers=bearer(API_TOKEN), json={"advance_ms": 1})
    assert response.status == 403
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tidemail", error="insufficient_scope"'
    assert refusals("not_admin") == before + 1
    response = await client.request(method, path, headers=bearer(ADMIN_TOKEN), json={"advance_ms": 1})
    assert response.status == 200


async def test_probes_metrics_and_the_unsubscribe_link_need_no_token(client: Client) -> None:
    assert (await client.get("/health")).status == 200
    assert (await client.head("/health")).status == 200
    # Not ready (no lag measured in memory), but answered: a probe sends no token.
    assert (await client.get("/ready")).status == 503
    assert (await client.get("/metrics")).status == 200
    # Refused for its forged token, not for a missing bearer token.
    for method in ("GET", "POST"):
        response = await client.request(method, "/unsubscribe?token=forged")
        assert response.status == 400
        assert "WWW-Authenticate" not in response.headers


async def test_a_path_no_route_serves_is_401_without_a_token_and_404_with_one(client: Client) -> None:
    assert (await client.get("/table/users")).status == 401
    assert (await client.get("/table/users", headers=bearer(API_TOKEN))).status == 404
    assert (await client.delete("/users/u1", headers=bearer(API_TOKEN))).status == 405


async def test_without_tokens_configured_nothing_but_the_public_routes_answers() -> None:
    web_app = web.Application()
    add_routes(web_app, in_memory_services(api_tokens=Secret(""), admin_tokens=Secret(" , ")))
    async with TestClient(TestServer(web_app)) as client:
        assert (await client.get("/health")).status == 200
        for header in ({}, bearer(""), {"Authorization": "Bearer  "}, bearer(API_TOKEN)):
            assert (await client.get("/stats", headers=header)).status == 401


def test_every_admin_path_is_marked_admin() -> None:
    # The rule the erase route and any later admin route rely on: the table says who may call.
    for route in (*ROUTES, *CLOCK_ROUTES):
        if route.path.startswith("/admin/") or route.path == "/stats/reset":
            assert route.access is Access.ADMIN, route.path
    public = {route.path for route in ROUTES if route.access is Access.PUBLIC}
    assert public == {"/health", "/ready", "/metrics", "/unsubscribe"}


def test_a_token_opens_what_its_list_grants() -> None:
    settings = Settings(api_tokens=Secret("a-token,shared"), admin_tokens=Secret("an-admin,shared"))
    credentials = Credentials.from_settings(settings)
    assert credentials.access_of(b"a-token") is Access.API
    assert credentials.access_of(b"an-admin") is Access.ADMIN
    assert credentials.access_of(b"shared") is Access.ADMIN
    assert credentials.access_of(b"a-toke") is None
    assert credentials.access_of(b"") is None
