"""An unsubscribe withdraws the emails already scheduled for the user, through the real
broker, worker, deliverer and SMTP server: welcome emails wait for their `send_at`, some of
their users unsubscribe (by event, and one through the delivered link's one-click POST),
and only the others' emails arrive once due."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.factories import event_doc
from tests.integration.harness import DelivererHarness, WorkerHarness, delete_deployment, email_jobs, keyed, produce
from tests.integration.smtp_server import RecordingHandler, smtp_server

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def signup_at(user: str, ts: int) -> dict[str, Any]:
    doc = event_doc("signup", user, event_id=f"signup-{user}", ts=ts)
    doc["context"] = {"email": f"{user}@example.com", "first_name": "Ada"}
    return doc


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def one_click(url: str) -> None:
    """What Gmail and Yahoo send for the unsubscribe button (RFC 8058)."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as http, http.post(url, data=b"List-Unsubscribe=One-Click", headers=form) as r:
        assert r.status == 200


async def test_an_unsubscribe_withdraws_the_users_scheduled_emails_and_no_one_elses(tmp_path: Path) -> None:
    worker = WorkerHarness(tmp_path, {"TIDEMAIL_QUIET_HOURS": ""})
    s = worker.settings
    handler = RecordingHandler()
    # Signed up "in an hour": their welcome emails wait at the deliverer for their send_at.
    later = int(time.time() * 1000) + HOUR
    users = [f"stay{n}" for n in range(6)] + [f"leave{n}" for n in range(6)]
    try:
        async with smtp_server(handler) as port:
            deliverer = DelivererHarness(worker, port)
            try:
                await worker.start()
                await deliverer.start()
                await produce(s.kafka_bootstrap, s.events_topic, [keyed(signup_at(user, later)) for user in users])
                await worker.wait_until_caught_up()
                jobs = {job["user_id"]: job for job in await email_jobs(s) if job["flow"] == "welcome"}
                # An experiment's holdout leaves some without a welcome email.
                staying = sorted(user for user in jobs if user.startswith("stay"))
                leaving = sorted(user for user in jobs if user.startswith("leave"))
                assert len(staying) >= 3 and len(leaving) >= 3

                async def all_held() -> bool:
                    _, health = await deliverer.get("/health")
                    return bool(health["pending"] == len(jobs))

                await until(all_held, 60, "every welcome email held until it is due")
                by_event = [
                    keyed(event_doc("unsubscribe", user, event_id=f"unsub-{user}", list=("all", "marketing")[n % 2]))
                    for n, user in enumerate(leaving[1:])
                ]
                await produce(s.kafka_bootstrap, s.events_topic, by_event)
                await one_click(jobs[leaving[0]]["unsubscribe_url"])

                async def withdrawn() -> bool:
                    _, health = await deliverer.get("/health")
                    return bool(health["pending"] == len(staying))

                # Dropped as the withdrawals arrive, not only when due.
                await until(withdrawn, 60, "the deliverer to drop the leaving users' emails")
                await deliverer.advance_clock(2 * HOUR)
                staying_jobs = {jobs[user]["job_id"] for user in staying}

                async def sent() -> bool:
                    return staying_jobs <= set(handler.per_job)

                await until(sent, 60, "the staying users' emails")
                await asyncio.sleep(2.0)
                _, metrics = await deliverer.get("/metrics")
            finally:
                await deliverer.stop()

        assert set(handler.per_job) == staying_jobs, "an unsubscribed user got a scheduled email"
        assert f'tidemail_deliveries_total{{outcome="withdrawn"}} {float(len(leaving))}' in metrics
    finally:
        worker.stop()
        await delete_deployment(s)
