"""`GET /schemas` and `GET /schemas/{name}`: the contracts' JSON Schemas as shipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from app.api import ApiServices, add_routes
from streams.core.schemas import SCHEMA_DIR
from tests.unit.app.api_support import API_TOKEN, bearer


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    # The schema routes read nothing of the worker's.
    unused: Any = None
    settings: Any = type(
        "Settings", (), {"allow_clock_control": False, "api_bearer_tokens": (API_TOKEN,), "admin_bearer_tokens": ()}
    )()
    services = ApiServices(**{field.name: unused for field in fields(ApiServices)} | {"settings": settings})
    web_app = web.Application()
    add_routes(web_app, services)
    async with TestClient(TestServer(web_app), headers=bearer(API_TOKEN)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/schemas/event", "/schemas/event.schema.json"])
async def test_a_schema_is_served_byte_for_byte_as_shipped(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "application/schema+json"
    body = await response.read()
    assert body == (SCHEMA_DIR / "event.schema.json").read_bytes()
    Draft202012Validator.check_schema(await response.json(content_type=None))


async def test_the_list_names_every_schema_with_its_url(client: TestClient[web.Request, web.Application]) -> None:
    body = await (await client.get("/schemas")).json()
    assert body == {
        "schemas": [
            {"name": "event", "title": "Tidemail event", "url": "/schemas/event"},
            {"name": "email-job", "title": "Tidemail email job", "url": "/schemas/email-job"},
            {
                "name": "email-job-withdrawal",
                "title": "Tidemail email job withdrawal",
                "url": "/schemas/email-job-withdrawal",
            },
        ]
    }
    for entry in body["schemas"]:
        assert (await client.get(entry["url"])).status == 200


@pytest.mark.parametrize("name", ["events", "job", "event.json", "..%2Fflows.yaml"])
async def test_an_unknown_schema_is_a_404_naming_the_known_ones(
    client: TestClient[web.Request, web.Application], name: str
) -> None:
    response = await client.get(f"/schemas/{name}")
    assert response.status == 404
    error = (await response.json())["error"]
    assert "known: event, email-job" in error
    assert error.startswith("no schema ")
