"""`tidemail ingest` through the real broker, driven by clients nobody here wrote: Segment's own
Python SDK (`segment-analytics-python`, pointed at it with `host=`) and curl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from segment.analytics import Client as SegmentClient

from streams.core.partitioning import partition_of
from tests.integration.harness import (
    PARTITIONS,
    WorkerHarness,
    free_port,
    read_topic,
    welcome_emails,
)

pytestmark = pytest.mark.integration

WRITE_KEY = "wk-test-0123456789"


class IngestServer:
    """`tidemail ingest` for a `WorkerHarness`'s deployment, on a port of its own."""

    def __init__(self, deployment: WorkerHarness, write_keys: str = f"old-key-9876543210, {WRITE_KEY}") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = deployment.tmp / "ingest.log"
        env = {
            **deployment.env,
            "TIDEMAIL_WRITE_KEYS": write_keys,
            "TIDEMAIL_INGEST_PORT": str(self.port),
            "TIDEMAIL_LOG_LEVEL": "info",
        }
        self.process = deployment.spawn("ingest", self.log_path, env)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"ingest exited with {self.process.returncode}; log:\n{self.log()}")
                try:
                    async with http.get(self.url + "/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"ingest did not answer /health in 60 s; log:\n{self.log()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
async def ingest(worker: WorkerHarness) -> AsyncIterator[IngestServer]:
    server = IngestServer(worker)
    try:
        await server.wait_ready()
        yield server
    finally:
        server.stop()


def curl(url: str, body: bytes, user: str | None = WRITE_KEY) -> tuple[int, dict[str, Any]]:
    """POST `body` with curl, as the README shows it; the status and the JSON answer."""
    auth = ["-u", f"{user}:"] if user is not None else []
    command = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *auth, "-H", "Content-Type: application/json"]
    result = subprocess.run([*command, "--data-binary", "@-", url], input=body, capture_output=True, check=True)
    answer, _, status = result.stdout.rpartition(b"\n")
    return int(status), json.loads(answer)


def segment_client(url: str, errors: list[Any], gzip: bool = False) -> SegmentClient:
    return SegmentClient(WRITE_KEY, host=url, gzip=gzip, on_error=lambda error, batch: errors.append((error, batch)))


async def test_segment_sdk_and_curl_calls_land_keyed_and_partitioned_like_the_worker_expects(
    worker: WorkerHarness, ingest: IngestServer
) -> None:
    s = worker.settings
    users = [f"seg-{n}" for n in range(12)]
    errors: list[Any] = []
    analytics = segment_client(ingest.url, errors)
    for user in users:
        analytics.identify(user, {"email": f"{user}@example.com", "firstName": "Ann", "plan": "pro"})
        analytics.track(user, "Product Viewed", {"sku": "G-32", "category": "games", "url": "/p/G-32"})
    analytics.flush()
    analytics.join()
    assert errors == []

    order = {
        "userId": "curl-1",
        "messageId": "order-o77",
        "event": "Order Completed",
        "timestamp": "2026-11-28T08:00:00Z",
        "properties": {
            "order_id": "o-77",
            "total": 27.5,
            "currency": "EUR",
            "products": [{"sku": "G-32", "name": "Monopoly", "category": "games", "price": 27.5}],
        },
    }
    status, answer = curl(ingest.url + "/v1/track", orjson.dumps(order))
    assert (status, answer) == (200, {"success": True, "accepted": 1})
    page = {"userId": "curl-1", "messageId": "page-1", "name": "Outdoor", "properties": {"path": "/outdoor"}}
    assert curl(ingest.url + "/v1/page", orjson.dumps(page)) == (200, {"success": True, "accepted": 1})
    identify = {"userId": "curl-1", "messageId": "id-1", "traits": {"timezone": "Europe/Paris"}}
    assert curl(ingest.url + "/v1/identify", orjson.dumps(identify)) == (200, {"success": True, "accepted": 1})

    records = await read_topic(s.kafka_bootstrap, s.events_topic)
    assert len(records) == 2 * len(users) + 3
    for record in records:
        doc = orjson.loads(record.value)
        assert record.key == doc["user_id"].encode()
        expected = DefaultPartitioner()(record.key, list(range(PARTITIONS)), list(range(PARTITIONS)))
        assert record.partition == expected == partition_of(record.key, PARTITIONS)
    docs = [orjson.loads(r.value) for r in records]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_type.setdefault(doc["type"], []).append(doc)
    assert {doc["user_id"] for doc in by_type["profile_update"]} == {*users, "curl-1"}
    profile = next(doc for doc in by_type["profile_update"] if doc["user_id"] in users)
    assert profile["properties"]["traits"] == {
        "email": f"{profile['user_id']}@example.com",
        "first_name": "Ann",
        "plan": "pro",
    }
    assert profile["context"]["email"] == f"{profile['user_id']}@example.com"
    # The SDK's own messageId (a UUID) is the event id; its timestamp is now, less its clock skew.
    assert len(profile["event_id"]) == 36
    assert abs(profile["timestamp"] - time.time() * 1000) < 60_000
    view = next(doc for doc in by_type["page_view"] if doc["user_id"] in users)
    assert view["properties"] == {"url": "/p/G-32", "category": "games", "sku": "G-32"}
    (purchase,) = by_type["purchase"]
    assert (purchase["event_id"], purchase["timestamp"]) == ("order-o77", 1_795_852_800_000)
    assert purchase["properties"]["items"][0]["quantity"] == 1
    curl_page = next(doc for doc in by_type["page_view"] if doc["event_id"] == "page-1")
    assert curl_page["properties"] == {"url": "/outdoor"}
    curl_profile = next(doc for doc in by_type["profile_update"] if doc["event_id"] == "id-1")
    assert curl_profile["context"] == {"timezone": "Europe/Paris"}


async def test_refusals_name_what_is_wrong_and_good_calls_around_them_are_produced(
    worker: WorkerHarness, ingest: IngestServer
) -> None:
    s = worker.settings
    signup = {"type": "track", "userId": "ok-1", "messageId": "s1", "event": "Signed Up"}
    assert curl(ingest.url + "/v1/track", orjson.dumps(signup), user=None)[0] == 401
    assert curl(ingest.url + "/v1/track", orjson.dumps(signup), user="not-a-key")[0] == 401
    status, answer = curl(ingest.url + "/v1/track", b'{"userId": "ok-1", "event": ')
    assert (status, answer["code"]) == (400, "invalid_request")
    big = {**signup, "properties": {"padding": "x" * 40_000}}
    status, answer = curl(ingest.url + "/v1/track", orjson.dumps(big))
    assert (status, answer["code"]) == (413, "too_large")
    status, answer = curl(ingest.url + "/v1/batch", orjson.dumps({"batch": [big] * 14}))
    assert (status, answer["code"]) == (413, "too_large")

    batch = [
        signup,
        {"type": "track", "userId": "ok-2", "messageId": "a1", "event": "Product Added", "properties": {"sku": "X"}},
        {"type": "page", "userId": "ok-2", "messageId": "p1", "properties": {"url": "/home"}},
    ]
    status, answer = curl(ingest.url + "/v1/batch", orjson.dumps({"batch": batch}))
    assert status == 400
    assert answer["accepted"] == [0, 2]
    assert answer["errors"] == [
        {
            "index": 1,
            "field": "properties.cart_id",
            "error": "`properties.cart_id` must be a non-empty string; got null or nothing",
        }
    ]
    records = await read_topic(s.kafka_bootstrap, s.events_topic)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == ["p1", "s1"]

    async with aiohttp.ClientSession() as http, http.get(ingest.url + "/metrics") as response:
        metrics = await response.text()
    assert 'tidemail_ingest_requests_total{route="batch",status="400"} 1.0' in metrics
    assert 'tidemail_ingest_events_total{outcome="accepted"} 2.0' in metrics


async def test_a_signup_over_http_becomes_a_welcome_email(worker: WorkerHarness, ingest: IngestServer) -> None:
    await worker.start()
    errors: list[Any] = []
    analytics = segment_client(ingest.url, errors, gzip=True)  # the SDK's option; aiohttp inflates the body
    analytics.track(
        "http-ann",
        "Signed Up",
        {"type": "organic", "first_name": "Ann"},
        context={"traits": {"email": "ann@example.com"}},
    )
    analytics.flush()
    analytics.join()
    assert errors == []
    await worker.wait_until_caught_up()
    (job,) = [job for job in await welcome_emails(worker.settings) if job["user_id"] == "http-ann"]
    assert (job["to"], job["subject"]) == ("ann@example.com", "Welcome to Tidemail Shop, Ann!")
    status, profile = await worker.get("/users/http-ann")
    assert status == 200
    assert profile["counts"] == {"signup": 1}


async def test_without_write_keys_every_request_is_refused(worker: WorkerHarness) -> None:
    server = IngestServer(worker, write_keys="")
    try:
        await server.wait_ready()
        signup = {"userId": "u1", "messageId": "s1", "event": "Signed Up"}
        assert curl(server.url + "/v1/track", orjson.dumps(signup), user="")[0] == 401
        assert "no write keys are set (TIDEMAIL_WRITE_KEYS)" in server.log()
    finally:
        server.stop()
