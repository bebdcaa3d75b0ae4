"""Malformed parameters and bodies are a 400 naming the field and the problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from app.api import ApiServices, add_routes
from tests.unit.app.api_support import ADMIN_TOKEN, bearer, in_memory_services

Client = TestClient[web.Request, web.Application]
YEAR_MS = 366 * 86_400_000
RESERVED = "`user_id` must not start with `__faust` or a byte 0 or 1"


@pytest.fixture
async def api() -> AsyncIterator[tuple[Client, ApiServices]]:
    services = in_memory_services()
    web_app = web.Application()
    add_routes(web_app, services)
    async with TestClient(TestServer(web_app), headers=bearer(ADMIN_TOKEN)) as client:
        yield client, services


async def refused(client: Client, method: str, path: str, **body: Any) -> dict[str, Any]:
    before = REGISTRY.get_sample_value("tidemail_api_refusals_total", {"reason": "bad_request"}) or 0.0
    response = await client.request(method, path, **body)
    assert response.status == 400, await response.text()
    after = REGISTRY.get_sample_value("tidemail_api_refusals_total", {"reason": "bad_request"})
    assert after == before + 1
    answer: dict[str, Any] = await response.json()
    return answer


@pytest.mark.parametrize(
    ("body", "got"),
    [
        ({"advance_ms": -5}, "got -5"),
        ({}, "got null or nothing"),
        ({"advance_ms": "1000"}, "got '1000'"),
        ({"advance_ms": 1.5}, "got 1.5"),
        ({"advance_ms": 1000.0}, "got 1000.0"),
        ({"advance_ms": True}, "got True"),
        ({"advance_ms": None}, "got null or nothing"),
        # Beyond 64 bits, JSON parsers give a float.
        ({"advance_ms": 10**20}, "got 1e+20"),
        ({"advance_ms": YEAR_MS + 1}, f"got {YEAR_MS + 1}"),
    ],
)
async def test_advancing_the_clock_takes_a_whole_number_of_milliseconds_up_to_a_year(
    api: tuple[Client, ApiServices], body: dict[str, Any], got: str
) -> None:
    client, services = api
    answer = await refused(client, "POST", "/admin/clock", json=body)
    assert answer == {"error": f"`advance_ms` must be a whole number from 0 to {YEAR_MS}; {got}", "field": "advance_ms"}
    assert services.clock.offset_ms == 0


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "`body` must be a JSON object; got b'', which is not JSON"),
        (b"advance_ms=5", "`body` must be a JSON object; got b'advance_ms=5', which is not JSON"),
        (b'{"advance_ms": 5', "`body` must be a JSON object; got b'{\"advance_ms\": 5', which is not JSON"),
        (b"[5]", "`body` must be a JSON object; got [5]"),
        (b"\xff\xfe", "`body` must be a JSON object; got b'\\xff\\xfe', which is not JSON"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(
    api: tuple[Client, ApiServices], data: bytes, error: str
) -> None:
    client, _ = api
    answer = await refused(client, "POST", "/admin/clock", data=data)
    assert answer == {"error": error, "field": "body"}


async def test_a_good_advance_moves_the_clock(api: tuple[Client, ApiServices]) -> None:
    client, services = api
    response = await client.post("/admin/clock", json={"advance_ms": 60_000})
    assert response.status == 200
    assert services.clock.offset_ms == 60_000


@pytest.mark.parametrize(
    ("query", "got"),
    [
        ("abc", "'abc'"),
        ("-1", "'-1'"),
        ("0", "'0'"),
        ("201", "'201'"),
        ("9" * 5000, "'" + "9" * 56 + "..."),
        ("1.5", "'1.5'"),
    ],
)
async def test_a_segment_sample_takes_a_limit_from_1_to_200(
    api: tuple[Client, ApiServices], query: str, got: str
) -> None:
    client, _ = api
    answer = await refused(client, "GET", f"/segments/new_visitors?limit={query}")
    assert answer == {"error": f"`limit` must be a whole number from 1 to 200; got {got}", "field": "limit"}


async def test_a_good_limit_bounds_the_sample(api: tuple[Client, ApiServices]) -> None:
    client, _ = api
    body = await (await client.get("/segments/new_visitors?limit=2")).json()
    assert len(body["sample"]) == 2
    body = await (await client.get("/segments/new_visitors")).json()
    assert sorted(body["sample"]) == ["u1", "u10", "u9"]


@pytest.mark.parametrize("k", ["abc", "0", "101", "-3", "٣"])
async def test_recommendations_take_k_from_1_to_100(api: tuple[Client, ApiServices], k: str) -> None:
    client, _ = api
    answer = await refused(client, "GET", f"/users/u1/recommendations?k={k}")
    assert answer["field"] == "k"
    assert answer["error"] == f"`k` must be a whole number from 1 to 100; got {k!r}"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/users/__faust_checkpoint", f"{RESERVED}; got '__faust_checkpoint'"),
        ("/users/%00checkpoint", f"{RESERVED}; got '\\x00checkpoint'"),
        (f"/users/{'x' * 201}/predictions", f"`user_id` must be 1 to 200 characters; got '{'x' * 56}..."),
        ("/templates/welcome/preview?user_id=__faust", f"{RESERVED}; got '__faust'"),
    ],
)
async def test_a_user_id_the_event_contract_refuses_is_refused(
    api: tuple[Client, ApiServices], path: str, error: str
) -> None:
    client, _ = api
    assert await refused(client, "GET", path) == {"error": error, "field": "user_id"}


async def test_a_preview_comes_as_html_or_json_only(api: tuple[Client, ApiServices]) -> None:
    client, _ = api
    answer = await refused(client, "GET", "/templates/welcome/preview?format=pdf")
    assert answer == {"error": "`format` must be one of html, json; got 'pdf'", "field": "format"}
    assert (await client.get("/templates/welcome/preview?format=html")).content_type == "text/html"
    assert (await client.get("/templates/welcome/preview?format=json&user_id=u1")).content_type == "application/json"
