"""The ingestion server's HTTP answers (streams/ingest/server.py) over a sink that keeps what
it is given: authentication, size limits, bad bodies, partial batches and a failing broker.
The real broker and Segment's own client are in tests/integration/test_ingest.py."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY

from streams.core.tracking import MAX_BATCH_BYTES, Accepted
from streams.ingest.config import IngestConfig
from streams.ingest.server import authorized, ingest_app

Client = TestClient[web.Request, web.Application]
KEYS = ("old-key", "write-key-1")


class MemorySink:
    def __init__(self) -> None:
        self.events: list[Accepted] = []
        self.started = self.stopped = False
        self.failure: Exception | None = None

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def produce(self, events: Sequence[Accepted]) -> None:
        if self.failure is not None:
            raise self.failure
        self.events.extend(events)


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def signup(user: str = "u42", **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "messageId": f"m-{user}", "event": "Signed Up", **extra}


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def client(sink: MemorySink) -> AsyncIterator[Client]:
    config = IngestConfig("127.0.0.1:1", "test.events", KEYS)
    async with TestClient(TestServer(ingest_app(config, sink)), headers=basic("write-key-1")) as test_client:
        yield test_client
    assert sink.started and sink.stopped


def requests_total(route: str, status: int) -> float:
    return REGISTRY.get_sample_value("tidemail_ingest_requests_total", {"route": route, "status": str(status)}) or 0


async def test_a_good_call_is_produced_keyed_by_user_and_answered_200(client: Client, sink: MemorySink) -> None:
    before = requests_total("track", 200)
    response = await client.post("/v1/track", json=signup())
    assert response.status == 200
    assert await response.json() == {"success": True, "accepted": 1}
    assert [(e.user_id, orjson.loads(e.value)["type"]) for e in sink.events] == [("u42", "signup")]
    assert requests_total("track", 200) == before + 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("wrong-key"),
        basic("write-key-"),
        basic("", "write-key-1"),  # the key as the password instead of the user name
        {"Authorization": "Bearer write-key-1"},
        {"Authorization": "Basic not-base64!"},
    ],
)
async def test_a_request_without_a_known_write_key_is_401(
    client: Client, sink: MemorySink, headers: dict[str, str]
) -> None:
    response = await client.post("/v1/track", json=signup(), headers={"Authorization": "", **headers})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="tidemail"'
    assert (await response.json())["code"] == "invalid_write_key"
    assert sink.events == []


def test_every_configured_key_opens_and_no_keys_open_nothing() -> None:
    header = basic("old-key")["Authorization"]
    assert authorized(header, KEYS)
    assert authorized(basic("old-key", "anything")["Authorization"], KEYS)
    assert authorized("Basic " + base64.b64encode(b"old-key").decode(), KEYS)  # no colon, as Segment allows
    assert not authorized(header, ())


async def test_a_batch_with_bad_calls_produces_the_good_ones_and_names_the_bad(
    client: Client, sink: MemorySink
) -> None:
    batch = [signup("a"), {**signup("b"), "event": "Coupon Applied"}, signup("c"), {**signup("d"), "type": "alias"}]
    response = await client.post("/v1/batch", json={"batch": batch})
    assert response.status == 400
    body = await response.json()
    assert body["code"] == "invalid_events"
    assert body["accepted"] == [0, 2]
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "event"), (3, "type")]
    assert body["message"].startswith("2 of 4 calls refused, the others accepted: [1] `event` must be one of")
    assert [e.user_id for e in sink.events] == ["a", "c"]


async def test_a_bad_single_call_says_its_problem(client: Client, sink: MemorySink) -> None:
    response = await client.post("/v1/identify", json={"userId": "u1", "traits": {}})
    assert response.status == 400
    body = await response.json()
    assert body["message"] == "`traits` must be a non-empty object; got {}"
    assert body["errors"] == [{"index": 0, "field": "traits", "error": body["message"]}]
    assert body["accepted"] == []


async def test_bad_json_is_400(client: Client, sink: MemorySink) -> None:
    response = await client.post("/v1/batch", data=b'{"batch": [', headers={"Content-Type": "application/json"})
    assert response.status == 400
    body = await response.json()
    assert (body["code"], body["field"]) == ("invalid_request", None)
    assert body["message"].startswith("the body is not valid JSON")


async def test_a_call_over_32_kb_is_413(client: Client, sink: MemorySink) -> None:
    response = await client.post("/v1/track", json=signup(properties={"padding": "x" * 33_000}))
    assert response.status == 413
    assert "the limit of /v1/track is 32,768" in (await response.json())["message"]
    batch = {"batch": [signup("a", properties={"padding": "x" * 33_000}), signup("b")]}
    response = await client.post("/v1/batch", json=batch)
    assert response.status == 413
    body = await response.json()
    assert (body["code"], body["accepted"]) == ("too_large", [1])
    assert [e.user_id for e in sink.events] == ["b"]


async def test_a_batch_over_500_kb_is_413_and_nothing_is_produced(client: Client, sink: MemorySink) -> None:
    batch = [signup(f"u{n}", properties={"padding": "x" * 20_000}) for n in range(30)]
    body = orjson.dumps({"batch": batch})
    assert len(body) > MAX_BATCH_BYTES
    response = await client.post("/v1/batch", data=body)
    assert response.status == 413
    assert (await response.json())["code"] == "too_large"
    assert sink.events == []


async def test_a_broker_that_does_not_acknowledge_is_503(client: Client, sink: MemorySink) -> None:
    sink.failure = KafkaTimeoutError()
    before = REGISTRY.get_sample_value("tidemail_ingest_events_total", {"outcome": "failed"}) or 0
    response = await client.post("/v1/batch", json={"batch": [signup("a"), signup("b")]})
    assert response.status == 503
    assert (await response.json())["code"] == "broker_unavailable"
    assert REGISTRY.get_sample_value("tidemail_ingest_events_total", {"outcome": "failed"}) == before + 2


async def test_health_and_metrics_need_no_key(client: Client) -> None:
    response = await client.get("/health", headers={"Authorization": ""})
    assert await response.json() == {"status": "ok", "topic": "test.events"}
    response = await client.get("/metrics", headers={"Authorization": ""})
    assert "tidemail_ingest_request_duration_seconds_bucket" in await response.text()
