"""Flows and governance through the real broker, with the worker's clock moved by the test."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.core.jobs import format_time
from streams.delivery.messages import parse_time
from tests.factories import event_doc, item
from tests.integration.harness import (
    DelivererHarness,
    WorkerHarness,
    delete_deployment,
    email_jobs,
    keyed,
    produce,
)
from tests.integration.smtp_server import RecordingHandler, smtp_server

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


async def send(worker: WorkerHarness, *docs: dict[str, Any]) -> None:
    await produce(worker.settings.kafka_bootstrap, worker.settings.events_topic, [keyed(doc) for doc in docs])
    await worker.wait_until_caught_up()


async def jobs(worker: WorkerHarness) -> list[dict[str, Any]]:
    return await email_jobs(worker.settings)


async def jobs_after(worker: WorkerHarness, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    """The jobs topic once it holds `count` jobs (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await jobs(worker)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"expected {count} jobs, found {len(await jobs(worker))}; log:\n{worker.log_tail()}")


def profile(user: str, ts: int, **traits: str) -> dict[str, Any]:
    doc = event_doc("profile_update", user, event_id=f"profile-{user}", ts=ts)
    doc["properties"] = {"traits": {"email": f"{user}@example.com", "first_name": user.title(), **traits}}
    return doc


def cart_add(user: str, cart: str, ts: int) -> dict[str, Any]:
    return event_doc("cart_add", user, event_id=f"add-{user}-{cart}", ts=ts, cart_id=cart, item=item())


def zone_at_local_hour(hour: int, now_ms: int) -> str:
    """A fixed-offset zone in which `now_ms` falls in local `hour`."""
    utc_hour = datetime.fromtimestamp(now_ms / 1000, tz=UTC).hour
    offset = (hour - utc_hour + 12) % 24 - 12  # -12..+11 hours from UTC
    # POSIX-style names invert the sign: Etc/GMT-3 is three hours ahead of UTC.
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"


def next_local(hour: int, now_ms: int, zone: str) -> str:
    local = datetime.fromtimestamp(now_ms / 1000, tz=ZoneInfo(zone))
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return target.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_cart_reminders_come_per_cart_after_the_quiet_hour_and_not_after_a_purchase(
    worker: WorkerHarness,
) -> None:
    worker.env["TIDEMAIL_QUIET_HOURS"] = ""
    await worker.start()
    now = int(time.time() * 1000)
    await send(worker, profile("ann", now), profile("bob", now), profile("cid", now))
    await send(worker, cart_add("ann", "cart-a", now), cart_add("bob", "cart-b", now), cart_add("cid", "cart-c", now))
    await send(worker, event_doc("purchase", "cid", event_id="buy", ts=now + 10 * MINUTE, cart_id="cart-c"))

    await worker.advance_clock(59 * MINUTE)
    await asyncio.sleep(1.5)  # three timer ticks
    assert await jobs(worker) == []

    await worker.advance_clock(2 * MINUTE)
    reminders = await jobs_after(worker, 2)
    assert sorted((j["user_id"], j["template"], j["step"]) for j in reminders) == [
        ("ann", "cart_reminder", 3),
        ("bob", "cart_reminder", 3),
    ]
    assert len({j["job_id"] for j in reminders}) == 2


async def test_the_welcome_series_branches_on_browsing(worker: WorkerHarness) -> None:
    worker.env["TIDEMAIL_QUIET_HOURS"] = ""
    await worker.start()
    now = int(time.time() * 1000)
    signups = []
    for user in ("walt", "vera"):
        doc = event_doc("signup", user, event_id=f"signup-{user}", ts=now)
        doc["context"] = {"email": f"{user}@example.com", "first_name": user.title()}
        signups.append(doc)
    await send(worker, *signups)
    await send(worker, event_doc("page_view", "walt", event_id="look", ts=now + HOUR))
    assert [j["template"] for j in await jobs_after(worker, 2)] == ["welcome", "welcome"]

    await worker.advance_clock(2 * DAY + MINUTE)
    found = await jobs_after(worker, 4)
    assert sorted((j["user_id"], j["template"]) for j in found if j["template"] != "welcome") == [
        ("vera", "welcome_discover"),
        ("walt", "welcome_browsed"),
    ]


async def test_governance_caps_respects_quiet_hours_per_zone_and_skips_unsubscribed(worker: WorkerHarness) -> None:
    worker.env["TIDEMAIL_FREQUENCY_CAP_24H"] = "1"
    await worker.start()
    now = int(time.time() * 1000)
    night, day = zone_at_local_hour(3, now), zone_at_local_hour(14, now)
    await send(
        worker,
        profile("owl", now, timezone=night),
        profile("lark", now, timezone=day),
        profile("gone", now, timezone=day),
        profile("busy", now, timezone=day),
    )
    await send(worker, event_doc("unsubscribe", "gone", event_id="bye", ts=now))
    await send(worker, *(cart_add(user, f"cart-{user}", now) for user in ("owl", "lark", "gone", "busy")))
    # `busy` also signs up: the welcome email uses up the day's one marketing email.
    welcome = event_doc("signup", "busy", event_id="signup-busy", ts=now)
    await send(worker, welcome)
    assert [j["user_id"] for j in await jobs_after(worker, 1)] == ["busy"]

    await worker.advance_clock(HOUR + MINUTE)
    found = await jobs_after(worker, 3)
    reminders = {j["user_id"]: j for j in found if j["template"] == "cart_reminder"}
    assert set(reminders) == {"owl", "lark"}
    assert reminders["owl"]["send_at"] == next_local(8, now + HOUR, night)
    assert reminders["lark"]["send_at"] == format_time(now + HOUR)
    # Jobs are visible once published; the batch's metrics are recorded just after.
    decisions = await governance_decisions(worker, until_seen={"unsubscribed", "capped_24h"})
    assert decisions["unsubscribed"] == 1 and decisions["capped_24h"] == 1
    assert decisions["delayed_quiet_hours"] == 1 and decisions["allowed"] == 3


async def test_kill_9_of_worker_and_deliverer_with_pending_timers_delivers_each_email_once(
    worker: WorkerHarness,
) -> None:
    """Welcome emails go out at once; cart reminders wait in timers while the worker is
    killed, then in the deliverer (for `send_at`) while it is killed; each arrives once."""
    worker.env["TIDEMAIL_QUIET_HOURS"] = ""
    handler = RecordingHandler()
    now = int(time.time() * 1000)
    async with smtp_server(handler) as port:
        deliverer = DelivererHarness(worker, port)
        try:
            await worker.start()
            await deliverer.start()
            welcomes = []
            for n in range(10):
                doc = event_doc("signup", f"new{n}", event_id=f"signup-{n}", ts=now)
                doc["context"] = {"email": f"new{n}@example.com"}
                welcomes.append(doc)
            carts = [profile(f"cart{n}", now) for n in range(30)] + [
                cart_add(f"cart{n}", f"c{n}", now) for n in range(30)
            ]
            await send(worker, *welcomes, *carts)
            await _wait_for_messages(handler, 10)

            worker.kill_hard()  # thirty reminders pending in the timer index
            await worker.start()
            await worker.advance_clock(HOUR + MINUTE)
            reminders = [j for j in await jobs_after(worker, 40) if j["template"] == "cart_reminder"]
            assert len(reminders) == 30
            # The deliverer's clock is an hour behind: it holds them, waiting for send_at.
            await asyncio.sleep(1.0)
            assert len(handler.messages) == 10
            deliverer.kill_hard()
            worker.kill_hard()
            await worker.start()
            await deliverer.start()
            await deliverer.advance_clock(HOUR + MINUTE)
            await _wait_for_messages(handler, 40)
            await asyncio.sleep(2.0)  # anything sent twice would arrive by now
        finally:
            await deliverer.stop()

    emitted = await jobs(worker)
    assert len(emitted) == len({j["job_id"] for j in emitted}) == 40
    assert handler.per_job == Counter({j["job_id"]: 1 for j in emitted})


async def _wait_for_messages(handler: RecordingHandler, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(handler.messages) < count:
        assert time.monotonic() < deadline, f"{len(handler.messages)} of {count} emails arrived"
        await asyncio.sleep(0.2)


async def test_pending_reminders_fire_once_on_whichever_worker_owns_them_after_a_rebalance(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = WorkerHarness(tmp_path / "a", env_overrides={"TIDEMAIL_QUIET_HOURS": ""})
    second = first.sibling(tmp_path / "b")
    now = int(time.time() * 1000)
    users = [f"shopper{n}" for n in range(24)]
    try:
        await first.start()
        await send(first, *(profile(user, now) for user in users), *(cart_add(u, f"c-{u}", now) for u in users))
        await second.start()  # takes half the partitions, with their pending timers
        _, health = await second.get("/health")
        assert health["owned_partitions"]
        for worker in (first, second):
            await worker.advance_clock(HOUR + MINUTE)
        await jobs_after(first, len(users))
        await asyncio.sleep(1.0)  # a reminder fired twice would be here by now
        reminders = await jobs(first)
        assert sorted(j["user_id"] for j in reminders) == sorted(users)
        assert len({j["job_id"] for j in reminders}) == len(users)
    finally:
        first.stop()
        second.stop()
        await delete_deployment(first.settings)


async def governance_decisions(worker: WorkerHarness, until_seen: set[str], timeout: float = 30) -> dict[str, float]:
    """The worker's governance decision counts, once every decision in `until_seen` is among them."""
    deadline = time.monotonic() + timeout
    while True:
        _, metrics = await worker.text("/metrics")
        decisions = {
            line.split('decision="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("tidemail_governance_decisions_total{")
        }
        if until_seen <= decisions.keys() or time.monotonic() > deadline:
            return decisions
        await asyncio.sleep(0.2)


async def test_a_send_at_the_best_hour_waits_for_the_hour_the_user_opens_email(
    worker: WorkerHarness, tmp_path: Path
) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "flows:\n"
        "  - name: thanks\n"
        "    trigger: {event: purchase}\n"
        "    steps:\n"
        "      - {send: winback, at: best_hour, within: 24h}\n"
    )
    worker.env.update(TIDEMAIL_FLOWS_FILE=str(flows), TIDEMAIL_QUIET_HOURS="")
    await worker.start()
    now = int(time.time() * 1000)
    zone = zone_at_local_hour(9, now)
    # Three evenings of opens at 19:00 the user's time; no trainer runs, so no fleet curve.
    evenings = [parse_time(next_local(19, now - days * DAY, zone), "t") for days in (3, 2, 1)]
    opens = [event_doc("email_open", "owl", event_id=f"open-{n}", ts=ts) for n, ts in enumerate(evenings)]
    await send(worker, profile("owl", now - 4 * DAY, timezone=zone), *opens)
    await send(worker, event_doc("purchase", "owl", event_id="buy", ts=now))
    [job] = await jobs_after(worker, 1)
    assert job["send_at"] == next_local(19, now, zone)
    decisions = await governance_decisions(worker, until_seen={"scheduled_best_hour"})
    assert decisions["scheduled_best_hour"] == 1 and decisions["allowed"] == 1
