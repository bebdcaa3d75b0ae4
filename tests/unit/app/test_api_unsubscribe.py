"""The unsubscribe link: one-click POST (RFC 8058) unsubscribes, a GET only asks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from app.api import ApiServices, add_routes
from streams.core.unsubscribe import sign_token
from tests.unit.app.api_support import in_memory_services

Client = TestClient[web.Request, web.Application]
A_DAY_MS = 86_400_000


@pytest.fixture
def services() -> ApiServices:
    return in_memory_services()


@pytest.fixture
async def client(services: ApiServices) -> AsyncIterator[Client]:
    web_app = web.Application()
    add_routes(web_app, services)
    async with TestClient(TestServer(web_app)) as test_client:
        yield test_client


def link(services: ApiServices, user: str = "u1", list_name: str = "marketing") -> str:
    secret = services.settings.unsubscribe_secret.reveal().encode()
    return f"/unsubscribe?token={sign_token(user, list_name, services.clock.now_ms() + A_DAY_MS, secret)}"


def submitted(services: ApiServices) -> list[dict[str, object]]:
    return [orjson.loads(value) for _, value in services.events.submitted]  # type: ignore[attr-defined]


def requests(outcome: str) -> float:
    return REGISTRY.get_sample_value("tidemail_unsubscribe_requests_total", {"outcome": outcome}) or 0.0


async def test_one_click_post_unsubscribes_without_confirmation(client: Client, services: ApiServices) -> None:
    before = requests("accepted")
    response = await client.post(
        link(services),
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert "no more marketing email" in await response.text()
    [event] = submitted(services)
    assert (event["user_id"], event["type"], event["properties"]) == ("u1", "unsubscribe", {"list": "marketing"})
    assert requests("accepted") == before + 1


async def test_a_get_asks_with_a_button_that_posts_the_same_link(client: Client, services: ApiServices) -> None:
    url = link(services, list_name="news")
    before = requests("accepted")
    for method in ("GET", "HEAD"):
        response = await client.request(method, url)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
    page = await (await client.get(url)).text()
    # What link scanners do, which must not unsubscribe anyone.
    assert submitted(services) == []
    assert requests("accepted") == before
    assert "Stop getting news email" in page
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page)
    assert form is not None
    action = unescape(form.group(1))
    assert action == "?" + url.split("?", 1)[1]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', form.group(2)))
    assert fields == {"List-Unsubscribe": "One-Click"}
    # The browser posts the form to the page's path with the action's query.
    response = await client.post("/unsubscribe" + action, data=fields)
    assert response.status == 200
    [event] = submitted(services)
    assert event["properties"] == {"list": "news"}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_invalid_or_expired_link_is_400_and_publishes_nothing(
    client: Client, services: ApiServices, method: str
) -> None:
    secret = services.settings.unsubscribe_secret.reveal().encode()
    expired = sign_token("u1", "marketing", services.clock.now_ms() - 1, secret)
    forged = sign_token("u1", "marketing", services.clock.now_ms() + A_DAY_MS, b"another secret")
    for token in (expired, forged, "nonsense", "", "%FF%FE"):
        response = await client.request(method, f"/unsubscribe?token={token}")
        assert response.status == 400
        page = await response.text()
        assert "not valid or has expired" in page and "<form" not in page
    assert submitted(services) == []
