"""What was sent survives losing Redis: the deliverer against the real broker and SMTP server,
with a Redis of its own that the tests kill with -9 and bring back empty."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer

from streams.core.jobs import format_time
from streams.delivery.claims import read_existing
from tests.integration.harness import DelivererHarness, WorkerHarness, delete_deployment, ensure_all_topics, free_port
from tests.integration.smtp_server import RecordingHandler, smtp_server
from tests.integration.test_delivery import job, outcomes, wait_for_outcomes
from tests.unit.delivery.test_messages import job_doc

pytestmark = pytest.mark.integration

COUNT = 300
PARTITIONS = 4


class PrivateRedis:
    """A redis-server on a free port with its own data directory, run as scripts/services.sh
    runs the shared one (AOF, fsync every second), so killing it disturbs no other test."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "redis"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        where = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        self.process = subprocess.Popen(
            ["redis-server", *where, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except redis.ConnectionError:
                    await asyncio.sleep(0.05)
            raise AssertionError(f"redis-server did not answer on :{self.port}")
        finally:
            await client.aclose()

    def kill_hard(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    async def restart_empty(self) -> None:
        """Killed, its data directory deleted, started again: everything it held is gone."""
        if self.process is not None:
            self.kill_hard()
        shutil.rmtree(self.dir)
        await self.start()

    async def finished_jobs(self) -> set[str]:
        """Jobs whose claim was replaced by an outcome record."""
        held = await self._held_by_job()
        return {
            job_id for job_id, value in held.items() if value is not None and read_existing(value).outcome is not None
        }

    async def claims(self) -> int:
        """Job claims and outcomes held (not the per-user sets of finished jobs)."""
        return len(await self._held_by_job())

    async def _held_by_job(self) -> dict[str, bytes | None]:
        """Each job's claim or outcome, by job id."""
        client = redis.from_url(self.url)
        try:
            keys = [key async for key in client.scan_iter(match="tidemail:*:delivery:*")]
            values = await client.mget(keys) if keys else []
        finally:
            await client.aclose()
        return {key.decode().rsplit(":", 1)[1]: value for key, value in zip(keys, values, strict=True)}


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    await server.start()
    yield server
    if server.process is not None:
        server.kill_hard()


@pytest.fixture
async def deployment(tmp_path: Path, own_redis: PrivateRedis) -> AsyncIterator[WorkerHarness]:
    harness = WorkerHarness(tmp_path, {"TIDEMAIL_REDIS_URL": own_redis.url})
    await ensure_all_topics(harness.settings)
    yield harness
    await delete_deployment(harness.settings)


async def produce_jobs(deployment: WorkerHarness, copies: int = 1) -> None:
    """One job due in an hour at the head of every partition, so no partition's committed
    offset passes it and a restart reads every job again (as quiet hours do in production),
    then COUNT jobs due now."""
    s = deployment.settings
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        in_an_hour = format_time(int(time.time() * 1000) + 3_600_000)
        for partition in range(PARTITIONS):
            doc = job_doc(job_id=f"later-{partition}", user_id=f"later{partition}", send_at=in_an_hour)
            await producer.send(s.jobs_topic, orjson.dumps(doc), key=doc["user_id"].encode(), partition=partition)
        for _ in range(copies):
            for n in range(COUNT):
                key, value = job(n)
                await producer.send(s.jobs_topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def received(handler: RecordingHandler, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(handler.messages) < at_least:
        assert time.monotonic() < deadline, f"only {len(handler.messages)} emails received in {timeout}s"
        await asyncio.sleep(0.01)


async def metric(deliverer: DelivererHarness, sample: str) -> float:
    _, text = await deliverer.get("/metrics")
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def wait_for_metric(deliverer: DelivererHarness, sample: str, value: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (found := await metric(deliverer, sample)) != value:
        assert time.monotonic() < deadline, f"{sample} is {found}, expected {value}; log:\n{deliverer.log_tail()}"
        await asyncio.sleep(0.3)


def assert_each_email_received_once(handler: RecordingHandler) -> None:
    assert max(handler.per_job.values()) == 1, "a job was sent twice"
    message_ids = Counter(str(m["Message-ID"]) for m in handler.messages)
    assert max(message_ids.values()) == 1, "a Message-ID arrived twice"
    assert not any(job_id.startswith("later-") for job_id in handler.per_job)


DUPLICATES = 'tidemail_deliveries_total{outcome="duplicate"}'


async def test_redis_killed_and_emptied_then_the_deliverer_killed_sends_nothing_twice(
    deployment: WorkerHarness, own_redis: PrivateRedis
) -> None:
    handler = RecordingHandler(data_delay_s=0.02)
    await produce_jobs(deployment)
    expected = {f"job-{n:04d}" for n in range(COUNT)}
    async with smtp_server(handler) as port:
        deliverer = DelivererHarness(deployment, port, {"TIDEMAIL_DELIVERY_CONCURRENCY": "4"})
        try:
            await deliverer.start()
            await received(handler, 80)
            await own_redis.restart_empty()
            await received(handler, 160)
            deliverer.kill_hard()
            await asyncio.sleep(0.5)
            # A job's outcome is recorded in Redis before it is published, so a kill between
            # the two leaves it finished in Redis alone.
            finished_before_kill = len(set(await outcomes(deliverer)) | await own_redis.finished_jobs())
            assert finished_before_kill < COUNT
            await deliverer.start()
            found = await wait_for_outcomes(deliverer, expected, timeout=90)
            # Every job finished before the kill was read again (the committed offsets stay
            # at the jobs due later) and recognised, from the deliveries topic though most of
            # them were claimed in the Redis that was lost, or from the Redis that came back.
            await wait_for_metric(deliverer, DUPLICATES, finished_before_kill)
            _, health = await deliverer.get("/health")
        finally:
            await deliverer.stop()

    assert_each_email_received_once(handler)
    final = {job_id: records[-1]["outcome"] for job_id, records in found.items()}
    assert all(len(records) == 1 for records in found.values())
    assert set(final.values()) <= {"sent", "unconfirmed"}
    assert all(final[job_id] == "unconfirmed" for job_id in expected - set(handler.per_job))
    assert all(handler.per_job[job_id] == 1 for job_id, outcome in final.items() if outcome == "sent")
    # At most one in flight per sender when the deliverer was killed.
    assert sum(outcome == "unconfirmed" for outcome in final.values()) <= 4
    assert health["pending"] == PARTITIONS


async def test_redis_lost_while_delivering_sending_goes_on_and_nothing_is_sent_twice(
    deployment: WorkerHarness, own_redis: PrivateRedis
) -> None:
    handler = RecordingHandler(data_delay_s=0.02)
    await produce_jobs(deployment)
    expected = {f"job-{n:04d}" for n in range(COUNT)}
    async with smtp_server(handler) as port:
        deliverer = DelivererHarness(deployment, port, {"TIDEMAIL_DELIVERY_CONCURRENCY": "4"})
        try:
            await deliverer.start()
            await received(handler, 60)
            own_redis.kill_hard()
            # Redis down: the deliveries topic alone decides, and sending goes on.
            await received(handler, 120)
            assert await metric(deliverer, "tidemail_delivery_claims_unavailable_total") > 0
            await own_redis.restart_empty()
            found = await wait_for_outcomes(deliverer, expected, timeout=90)
            # Every job again from upstream: recognised, none sent.
            await produce_jobs(deployment)
            await wait_for_metric(deliverer, DUPLICATES, COUNT + PARTITIONS)
            await deliverer.stop()
            # And after a restart that reads both copies again from the committed offsets.
            await deliverer.start()
            await wait_for_metric(deliverer, DUPLICATES, 2 * COUNT + PARTITIONS)
        finally:
            await deliverer.stop()

    assert_each_email_received_once(handler)
    assert set(handler.per_job) == expected
    assert all([r["outcome"] for r in found[job_id]] == ["sent"] for job_id in expected)
    assert await own_redis.claims() < COUNT  # the Redis that came back never knew most of them
