"""`tidemail deliver` against the real broker and Redis, sending to a real SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.events import validate_event
from streams.core.jobs import format_time
from streams.delivery.ledger import CLAIMED, RELEASED
from tests.integration.harness import (
    DelivererHarness,
    WorkerHarness,
    delete_deployment,
    ensure_all_topics,
    produce,
    read_topic,
)
from tests.integration.smtp_server import RecordingHandler, smtp_server
from tests.unit.delivery.test_messages import job_doc

pytestmark = pytest.mark.integration


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[WorkerHarness]:
    """An isolated deployment (topics, app id) with its topics created; no worker is started."""
    harness = WorkerHarness(tmp_path)
    await ensure_all_topics(harness.settings)
    yield harness
    await delete_deployment(harness.settings)


def job(n: int, send_at_ms: int | None = None, to: str | None = None) -> tuple[bytes, bytes]:
    user = f"u{n:04d}"
    doc = job_doc(
        job_id=f"job-{n:04d}",
        user_id=user,
        to=to or f"{user}@example.com",
        send_at=format_time(send_at_ms if send_at_ms is not None else int(time.time() * 1000)),
    )
    return user.encode(), orjson.dumps(doc)


async def outcomes(deliverer: DelivererHarness) -> dict[str, list[dict[str, Any]]]:
    """Each job's outcome records, in order; its claims (and claims given up) are left out."""
    s = deliverer.settings
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in await read_topic(s.kafka_bootstrap, s.deliveries_topic):
        doc = orjson.loads(record.value)
        assert record.key == doc["user_id"].encode()
        if doc["outcome"] not in (CLAIMED, RELEASED):
            found[doc["job_id"]].append(doc)
    return found


async def wait_for_outcomes(deliverer: DelivererHarness, job_ids: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await outcomes(deliverer)
        if job_ids <= set(found):
            return found
        await asyncio.sleep(0.3)
    missing = sorted(job_ids - set(await outcomes(deliverer)))
    raise AssertionError(f"no outcome for {len(missing)} jobs, e.g. {missing[:5]}; log:\n{deliverer.log_tail()}")


async def test_each_job_is_sent_once_retried_when_greylisted_and_bounced_when_unknown(
    deployment: WorkerHarness,
) -> None:
    handler = RecordingHandler(greylist={"grey@example.com"}, unknown={"gone@example.com"})
    s = deployment.settings
    jobs = [job(n) for n in range(20)]
    grey, gone = job(100, to="grey@example.com"), job(101, to="gone@example.com")
    # Every job twice (at-least-once upstream), and one record that is no job at all.
    await produce(s.kafka_bootstrap, s.jobs_topic, [*jobs, grey, gone, (b"u9999", b"{not json"), *jobs, grey])
    async with smtp_server(handler) as port:
        deliverer = DelivererHarness(deployment, port)
        try:
            await deliverer.start()
            expected = {f"job-{n:04d}" for n in [*range(20), 100, 101]}
            found = await wait_for_outcomes(deliverer, expected)
            _, metrics = await deliverer.get("/metrics")
        finally:
            await deliverer.stop()

    assert set(handler.per_job) == expected - {"job-0101"}
    assert max(handler.per_job.values()) == 1
    first = {job_id: records[0] for job_id, records in found.items()}
    assert all(first[f"job-{n:04d}"]["outcome"] == "sent" for n in range(20))
    assert (first["job-0100"]["outcome"], first["job-0100"]["attempts"]) == ("sent", 2)
    assert handler.rcpt_replies[("grey@example.com", 451)] == 1
    bounced = first["job-0101"]
    assert (bounced["outcome"], bounced["smtp_code"]) == ("bounced", 550)
    assert "no such user" in bounced["reason"]
    # A second record of a job, held or finished (the deliveries topic has its outcome), publishes nothing.
    assert all(len(records) == 1 for records in found.values())

    events = [orjson.loads(r.value) for r in await read_topic(s.kafka_bootstrap, s.events_topic)]
    assert len(events) == 1
    bounce = validate_event(events[0], b"u0101")
    assert (bounce.type, bounce.event_id) == ("email_bounce", "bounce-job-0101")
    assert bounce.properties["bounce"] == "hard"

    dead = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
    assert [(r.value, dict(r.headers)["tidemail.kind"]) for r in dead] == [(b"{not json", b"invalid_job")]

    message = next(m for m in handler.messages if m["X-Tidemail-Job-Id"] == "job-0003")
    assert message["To"] == "u0003@example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert {part.get_content_type() for part in message.iter_parts()} == {"text/plain", "text/html"}
    assert 'tidemail_deliveries_total{outcome="sent"} 21.0' in metrics
    assert 'tidemail_deliveries_total{outcome="bounced"} 1.0' in metrics
    assert 'tidemail_deliveries_total{outcome="invalid"} 1.0' in metrics
    assert 'tidemail_deliveries_total{outcome="duplicate"} 21.0' in metrics


async def test_a_job_waits_for_its_send_at_on_the_deliverers_clock(deployment: WorkerHarness) -> None:
    handler = RecordingHandler()
    s = deployment.settings
    now = int(time.time() * 1000)
    await produce(s.kafka_bootstrap, s.jobs_topic, [job(1, send_at_ms=now + 3_600_000), job(2)])
    async with smtp_server(handler) as port:
        deliverer = DelivererHarness(deployment, port)
        try:
            await deliverer.start()
            await wait_for_outcomes(deliverer, {"job-0002"})
            await asyncio.sleep(1.0)
            assert set(handler.per_job) == {"job-0002"}
            _, health = await deliverer.get("/health")
            assert health["pending"] == 1
            await deliverer.advance_clock(3_600_000)
            found = await wait_for_outcomes(deliverer, {"job-0001"}, timeout=10)
        finally:
            await deliverer.stop()
    assert found["job-0001"][0]["outcome"] == "sent"
    assert handler.per_job == Counter({"job-0001": 1, "job-0002": 1})


async def test_kill_9_mid_stream_sends_no_job_twice_and_reports_every_job(deployment: WorkerHarness) -> None:
    handler = RecordingHandler(data_delay_s=0.02)
    s = deployment.settings
    count = 200
    await produce(s.kafka_bootstrap, s.jobs_topic, [job(n) for n in range(count)])
    expected = {f"job-{n:04d}" for n in range(count)}
    async with smtp_server(handler) as port:
        deliverer = DelivererHarness(deployment, port, {"TIDEMAIL_DELIVERY_CONCURRENCY": "4"})
        try:
            await deliverer.start()
            while len(handler.messages) < 50:
                await asyncio.sleep(0.01)
            deliverer.kill_hard()
            received_before_restart = len(handler.messages)
            assert received_before_restart < count
            await deliverer.start()
            found = await wait_for_outcomes(deliverer, expected, timeout=90)
        finally:
            await deliverer.stop()

    assert max(handler.per_job.values()) == 1, "a job was sent twice"
    final = {job_id: records[-1]["outcome"] for job_id, records in found.items()}
    # Every job was either sent (once) or, if the kill fell between its claim and its
    # outcome, reported `unconfirmed`; never silently dropped.
    assert set(final.values()) <= {"sent", "unconfirmed"}
    not_received = expected - set(handler.per_job)
    assert all(final[job_id] == "unconfirmed" for job_id in not_received)
    assert all(handler.per_job[job_id] == 1 for job_id, outcome in final.items() if outcome == "sent")
    unconfirmed = sum(outcome == "unconfirmed" for outcome in final.values())
    assert unconfirmed <= 4  # at most one per sender in flight at the kill
