"""Erasing users through the real broker, Redis, worker and deliverer: their pending emails
are never sent, their state and timers leave the changelog, the erasure record is
published, and replaying their events does not bring them back. Prints the erase latency
and the deliverer's throughput with the erasure check (`pytest -s` shows them)."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis
from aiosmtpd.smtp import SMTP, Envelope, Session

from streams.core.jobs import format_time
from streams.kafka.store import erasure_key
from tests.factories import event_doc
from tests.integration.harness import (
    ROOT,
    DelivererHarness,
    WorkerHarness,
    delete_deployment,
    email_jobs,
    ensure_all_topics,
    keyed,
    produce,
    read_topic,
)
from tests.integration.smtp_server import RecordingHandler, smtp_server
from tests.unit.delivery.test_messages import job_doc

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def signup_at(user: str, ts: int, event_id: str | None = None) -> dict[str, Any]:
    doc = event_doc("signup", user, event_id=event_id or f"signup-{user}", ts=ts)
    doc["context"] = {"email": f"{user}@example.com", "first_name": "Ada"}
    return doc


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


async def welcome_jobs(worker: WorkerHarness) -> dict[str, dict[str, Any]]:
    s = worker.settings
    jobs = await email_jobs(s)
    return {job["user_id"]: job for job in jobs if job["flow"] == "welcome"}


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def erase_and_time_it(worker: WorkerHarness, user: str) -> float:
    """POST the erase, then poll the user's state until it is gone: seconds from the request."""
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        async with http.post(f"{worker.url}/users/{user}/erase") as response:
            assert response.status == 202
        while True:
            async with http.get(f"{worker.url}/users/{user}") as response:
                if response.status == 404:
                    return time.monotonic() - started
            assert time.monotonic() - started < 30, f"{user} still there after 30 s"
            await asyncio.sleep(0.005)


def erase_with_the_cli(worker: WorkerHarness, user: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "erase", user, "--source", "privacy-desk"],
        cwd=ROOT,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


async def test_erased_users_get_none_of_their_pending_emails_and_replays_do_not_bring_them_back(
    tmp_path: Path,
) -> None:
    worker = WorkerHarness(tmp_path, {"TIDEMAIL_QUIET_HOURS": ""})
    s = worker.settings
    handler = RecordingHandler()
    now = now_ms()
    # Signed up "in an hour": their welcome emails wait at the deliverer for their send_at.
    kept = [signup_at(f"keep{n}", now) for n in range(4)]
    doomed = [signup_at(f"gone{n:02d}", now + HOUR) for n in range(16)]
    try:
        async with smtp_server(handler) as port:
            deliverer = DelivererHarness(worker, port)
            try:
                await worker.start()
                await deliverer.start()
                await produce(s.kafka_bootstrap, s.events_topic, [keyed(doc) for doc in kept + doomed])
                await worker.wait_until_caught_up()
                jobs = await welcome_jobs(worker)
                # An experiment's holdout leaves some without a welcome email.
                pending = sorted(user for user in jobs if user.startswith("gone"))
                assert len(pending) >= 8
                sent_now = {jobs[user]["job_id"] for user in jobs if user.startswith("keep")}

                async def pending_held() -> bool:
                    _, health = await deliverer.get("/health")
                    return bool(health["pending"] == len(pending) and sent_now <= set(handler.per_job))

                await until(pending_held, 60, "the kept users' emails sent and the others held")
                by_api, by_cli = pending[:-1], pending[-1]
                # Erasing a user already emailed deletes the outcome Redis recorded for them.
                emailed = "keep0"
                assert await outcome_keys(worker, emailed, jobs[emailed]["job_id"]) == 2
                await erase_and_time_it(worker, emailed)
                await until(
                    lambda: no_outcome_keys(worker, emailed, jobs[emailed]["job_id"]), 30, "the outcome deleted"
                )
                exported = await export_through_redis(worker, pending[0])
                latencies = [await erase_and_time_it(worker, user) for user in by_api]
                assert f"erase of {by_cli!r} published" in erase_with_the_cli(worker, by_cli)
                await until(lambda: user_gone(worker, by_cli), 30, "the CLI's erasure")

                async def all_dropped() -> bool:
                    _, health = await deliverer.get("/health")
                    return bool(health["pending"] == 0)

                # Dropped as the erasures arrive, not only when due.
                await until(all_dropped, 30, "the deliverer to drop the erased users' jobs")
                await deliverer.advance_clock(2 * HOUR)
                await asyncio.sleep(2.0)
                dropped = await metric(deliverer.url, 'tidemail_deliveries_total{outcome="erased"}')

                # Their events replayed (the same ones, and copies under new ids) skip.
                replay = [keyed(doc) for doc in doomed] + [
                    keyed(signup_at(doc["user_id"], doc["timestamp"], f"copy-{doc['user_id']}")) for doc in doomed
                ]
                await produce(s.kafka_bootstrap, s.events_topic, replay)
                await worker.wait_until_caught_up()
                statuses = [(await worker.get(f"/users/{user}"))[0] for user in pending]
                skipped = await metric(worker.url, 'tidemail_events_skipped_total{reason="erased"}')
            finally:
                await deliverer.stop()

        assert not {jobs[user]["job_id"] for user in pending} & set(handler.per_job), "an erased user got email"
        assert exported["state"]["traits"]["email"] == f"{pending[0]}@example.com"
        assert exported["cached_predictions"], "the export read nothing back from Redis"
        assert dropped == len(pending)
        assert statuses == [404] * len(pending)
        # Each erased user's signup, and its copy; the held-out users' copies apply, as they should.
        assert skipped == 2 * len(pending)
        await check_the_topics(worker, sorted([*pending, "keep0"]), by_cli)
        median, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
        print(f"\nerase latency (POST to 404), {len(latencies)} users: median {median:.0f} ms, max {worst:.0f} ms")
    finally:
        worker.stop()
        await delete_deployment(s)


async def export_through_redis(worker: WorkerHarness, user: str) -> dict[str, Any]:
    """The user's export, once a prediction of theirs is cached in Redis."""
    assert (await worker.get(f"/users/{user}/predictions"))[0] == 200
    status, export = await worker.get(f"/users/{user}/export")
    assert status == 200
    return dict(export)


async def outcome_keys(worker: WorkerHarness, user: str, job_id: str) -> int:
    """How many of the job's outcome and the user's set of finished jobs Redis holds."""
    namespace = f"tidemail:{worker.settings.app_id}"
    client = redis.from_url(worker.settings.redis_url)
    try:
        return int(await client.exists(f"{namespace}:delivery:{job_id}", f"{namespace}:delivery-user:{user}"))
    finally:
        await client.aclose()


async def no_outcome_keys(worker: WorkerHarness, user: str, job_id: str) -> bool:
    return await outcome_keys(worker, user, job_id) == 0


async def user_gone(worker: WorkerHarness, user: str) -> bool:
    return (await worker.get(f"/users/{user}"))[0] == 404


async def check_the_topics(worker: WorkerHarness, erased: list[str], by_cli: str) -> None:
    s = worker.settings
    records = await read_topic(s.kafka_bootstrap, s.erasures_topic)
    found = {r.key.decode(): orjson.loads(r.value) for r in records}
    assert sorted(found) == erased and len(records) == len(erased)
    assert all(found[user]["source"] == "api" for user in erased if user != by_cli)
    assert found[by_cli]["source"] == "privacy-desk"
    # The changelog's last word on each erased user's key, and on each of their timer
    # entries, is a tombstone; their markers are named by a hash, not the id.
    latest: dict[bytes, bytes | None] = {}
    for r in await read_topic(s.kafka_bootstrap, f"{s.app_id}-users-changelog"):
        latest[r.key] = r.value
    for user in erased:
        assert user.encode() in latest and latest[user.encode()] is None
        assert latest[erasure_key(user)] is not None
        timers = [key for key in latest if key.startswith(b"\x01due:") and key.endswith(b":" + user.encode())]
        assert timers, f"{user} had no timer entry to remove"
        assert all(latest[key] is None for key in timers)
    live = [key for key, value in latest.items() if value is not None]
    assert not [key for key in live for user in erased if user.encode() in key]


@pytest.mark.parametrize("other_erasures", [0, 20_000])
async def test_deliverer_throughput_with_the_erasure_check(tmp_path: Path, other_erasures: int) -> None:
    """2,000 jobs due now; with erasures of other users known, and 100 of these jobs' users
    erased after the jobs were made: every other job is sent once, none of the 100."""
    deployment = WorkerHarness(tmp_path)
    s = deployment.settings
    count = 2_000
    erased_jobs = 100 if other_erasures else 0
    now = now_ms()
    jobs = [job_record(n, now) for n in range(count)]
    erasures = [erasure_doc(f"other{n}", now) for n in range(other_erasures)]
    erased_users = [f"t{n:05d}" for n in range(0, count, 20)][:erased_jobs]
    erasures += [erasure_doc(user, now) for user in erased_users]
    handler = TimingHandler()
    try:
        await ensure_all_topics(s)
        await produce(s.kafka_bootstrap, s.erasures_topic, erasures)
        await produce(s.kafka_bootstrap, s.jobs_topic, jobs)
        async with smtp_server(handler) as port:
            deliverer = DelivererHarness(deployment, port, {"TIDEMAIL_DELIVERY_CONCURRENCY": "8"})
            try:
                started = time.monotonic()
                await deliverer.start()
                assigned = time.monotonic() - started
                while sum(handler.per_job.values()) < count - erased_jobs:
                    assert time.monotonic() - started < 120, deliverer.log_tail()
                    await asyncio.sleep(0.02)
                await asyncio.sleep(1.0)
                dropped = await metric(deliverer.url, 'tidemail_deliveries_total{outcome="erased"}')
            finally:
                await deliverer.stop()
        assert len(handler.per_job) == count - erased_jobs and max(handler.per_job.values()) == 1
        assert not {f"job-{user[1:]}" for user in erased_users} & set(handler.per_job)
        assert dropped == erased_jobs
        sending = handler.last - handler.first
        print(
            f"\ndeliverer with {len(erasures)} erasures known: partitions assigned {assigned:.2f} s after start; "
            f"{count - erased_jobs} emails in {sending:.2f} s from the first to the last "
            f"({(count - erased_jobs - 1) / sending:.0f}/s); {erased_jobs} jobs of erased users dropped"
        )
    finally:
        await delete_deployment(s)


class TimingHandler(RecordingHandler):
    """Counts each message by job id from its headers alone, and when the first and last came."""

    def __init__(self) -> None:
        super().__init__()
        self.first = self.last = 0.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        headers = BytesHeaderParser(policy=policy.default).parsebytes(envelope.original_content or b"")
        self.per_job[str(headers["X-Tidemail-Job-Id"])] += 1
        self.last = time.monotonic()
        self.first = self.first or self.last
        return "250 2.0.0 queued"


def job_record(n: int, now: int) -> tuple[bytes, bytes]:
    user = f"t{n:05d}"
    doc = job_doc(
        job_id=f"job-{n:05d}",
        user_id=user,
        to=f"{user}@example.com",
        send_at=format_time(now),
        created_at=format_time(now - 60_000),
    )
    return user.encode(), orjson.dumps(doc)


def erasure_doc(user: str, processed_ms: int) -> tuple[bytes, bytes]:
    record = {"erasure_id": f"x:{user}", "user_id": user, "processed_at": format_time(processed_ms)}
    return user.encode(), orjson.dumps(record)
