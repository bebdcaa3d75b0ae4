"""Whatever arrives (any path, method, query, body and token), the API answers it without a
5xx: a malformed input is the caller's error, never the server's."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from app.api import ApiServices
from app.api.routes import CLOCK_ROUTES, ROUTES
from tests.unit.app.api_support import ADMIN_TOKEN, API_TOKEN, bearer, two_workers

Client = TestClient[web.Request, web.Application]

# Names the services know, so that requests reach past the 404s into the handlers.
KNOWN = {
    "user_id": ["u1", "u9", "u0", "nobody"],
    "name": ["new_visitors", "lapsed", "cart_abandoners", "welcome", "cart_abandonment", "event", "email-job", "none"],
}
PARAMETERS = ["k", "limit", "format", "user_id", "token", "percentiles"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
TEMPLATES = [(route.method, route.path) for route in (*ROUTES, *CLOCK_ROUTES)]

anything = st.one_of(
    st.text(max_size=40).map(lambda text: quote(text, safe="")),
    # Sent as they are: bad percent-escapes, dot segments, empty segments.
    st.text(alphabet="%0aZ./_-~:@!$&'()*+,;=", max_size=12),
)


@st.composite
def paths(draw: st.DrawFn, template: str) -> str:
    """`template` with each placeholder a name the services know (mostly) or anything."""

    def fill(match: re.Match[str]) -> str:
        known = st.sampled_from(KNOWN[match.group(1)])
        return draw(st.one_of(known, known, known, anything))

    return re.sub(r"\{(\w+)\}", fill, template)


numbers = st.one_of(st.integers(), st.integers(-5, 300)).map(str)
values = st.one_of(
    numbers,
    st.text(max_size=30),
    st.sampled_from([*KNOWN["user_id"], "html", "json", "", "abc", "1.5", "9" * 40, " 7", "٣"]),
)
# Each parameter a route reads present or not, and a few no route reads.
queries = st.builds(
    lambda read, unread: unread | read,
    st.fixed_dictionaries({}, optional={name: values for name in PARAMETERS}),
    st.dictionaries(st.text(max_size=8), values, max_size=2),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
advances = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10), json_values)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(lambda advance: json.dumps({"advance_ms": advance}).encode(), advances),
)
tokens = st.sampled_from([bearer(ADMIN_TOKEN)] * 12 + [bearer(API_TOKEN), {}, bearer("not-a-token")])
headers = st.one_of(
    # Mostly the admin token, which every route takes, so that requests reach the handlers.
    tokens,
    tokens,
    tokens,
    # What an HTTP client lets through: printable ASCII.
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(lambda text: {"Authorization": text}),
)


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[tuple[Client, ApiServices]]:
    # Two workers, so that requests about the second's users are forwarded to it.
    async with two_workers() as ((client, _), (services, _)):
        yield client, services


@pytest.mark.parametrize(("method", "template"), TEMPLATES)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), query=queries, body=bodies, header=headers)
async def test_no_request_to_a_route_gets_a_5xx(
    api: tuple[Client, ApiServices],
    method: str,
    template: str,
    data: st.DataObject,
    query: dict[str, str],
    body: bytes | None,
    header: dict[str, str],
) -> None:
    path = data.draw(paths(template))
    # Mostly the route's own method.
    method = data.draw(st.sampled_from([method] * 30 + METHODS))
    await assert_answered(api, method, path, query, body, header)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(METHODS),
    segments=st.lists(anything, max_size=4),
    query=queries,
    body=bodies,
    header=headers,
)
async def test_no_request_anywhere_gets_a_5xx(
    api: tuple[Client, ApiServices],
    method: str,
    segments: list[str],
    query: dict[str, str],
    body: bytes | None,
    header: dict[str, str],
) -> None:
    await assert_answered(api, method, "/" + "/".join(segments), query, body, header)


async def assert_answered(
    api: tuple[Client, ApiServices],
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes | None,
    header: dict[str, str],
) -> None:
    client, services = api
    # Advances add up over examples; start each from the real clock.
    services.clock.offset_ms = 0
    url = URL.build(path=path, encoded=True)
    async with client.request(method, url, params=query, data=body, headers=header) as response:
        # 503 is /ready's answer by design while the worker is not ready (here: no lag measured).
        expected_5xx = response.status == 503 and url.path == "/ready"
        assert response.status < 500 or expected_5xx, (response.status, await response.text())
        # A HEAD answer has the GET's headers and no body.
        if response.status == 400 and response.content_type == "application/json" and method != "HEAD":
            answer: dict[str, Any] = await response.json()
            assert answer["error"].startswith(f"`{answer['field']}` must ")
