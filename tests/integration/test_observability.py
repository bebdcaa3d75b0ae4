"""The dashboards and alerts against the real thing: Prometheus scrapes a worker, a trainer and a
deliverer under traffic that touches every metric a panel or an alert reads, every panel's
PromQL and every alert's expression is evaluated through Prometheus' HTTP API, and killing the
worker fires TidemailWorkerDown into a real Alertmanager."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.factories import event_doc
from tests.integration.harness import (
    DelivererHarness,
    WorkerHarness,
    delete_deployment,
    free_port,
    keyed,
    produce,
    signup,
)
from tests.integration.prometheus import (
    Server,
    alert_queries,
    dashboard_queries,
    start_alertmanager,
    start_prometheus,
    unanswered,
)
from tests.integration.smtp_server import RecordingHandler, smtp_server

pytestmark = pytest.mark.integration

USERS = 20
CLICKS = 200


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[WorkerHarness]:
    # The trainer serves metrics; no quiet hours, so the welcome emails go out whatever the hour.
    harness = WorkerHarness(tmp_path, {"TIDEMAIL_TRAINER_METRICS_PORT": str(free_port()), "TIDEMAIL_QUIET_HOURS": ""})
    yield harness
    harness.stop()
    await delete_deployment(harness.settings)


def traffic(now_ms: int) -> list[tuple[bytes | None, bytes | None]]:
    """Signups (welcome emails: sent, one greylisted that fails, one that bounces), a duplicate,
    a record that is no event, carts left (timers), and clicks (recommendation quality)."""
    users = [f"o{n}" for n in range(USERS)] + ["grey", "gone"]
    events: list[tuple[bytes | None, bytes | None]] = [signup(user, "Ada") for user in users]
    events.append(signup("o0", "Ada"))
    events.append((b"o1", b"not json"))
    for user in users[:5]:
        cart = event_doc("cart_add", user, event_id=f"cart-{user}", ts=now_ms, cart_id=f"c-{user}")
        events.append(keyed(cart))
    for n in range(CLICKS):
        sku = f"SKU-{n % 12}"
        click = event_doc("click", f"o{n % USERS}", event_id=f"click-{n}", ts=now_ms, sku=sku, url=f"/p/{sku}")
        events.append(keyed(click))
    return events


async def drive(worker: WorkerHarness, deliverer: DelivererHarness) -> None:
    s = worker.settings
    await produce(s.kafka_bootstrap, s.events_topic, traffic(int(time.time() * 1000)))
    await produce(s.kafka_bootstrap, s.jobs_topic, [(b"o3", b"{not a job")])
    await worker.wait_until_caught_up()
    # The carts are idle an hour later: the timers fire, the abandoners' segment fills.
    await worker.advance_clock(2 * 3_600_000)
    for _ in range(2):
        assert (await worker.get("/users/o0/predictions"))[0] == 200
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(worker.url + "/stats") as refused:
            assert refused.status == 401
        async with anonymous.get(worker.url + "/unsubscribe?token=forged") as forged:
            assert forged.status == 400
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, metrics = await deliverer.get("/metrics")
        if all(f'tidemail_deliveries_total{{outcome="{o}"}}' in metrics for o in ("sent", "bounced", "failed")):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"deliveries did not reach every outcome:\n{deliverer.log_tail()}")


async def problems_once_scraped(prometheus: Server, timeout: float = 45) -> list[str]:
    """Every panel and alert problem, re-checked until none is left or `timeout` passes (the
    trainer's snapshots, lag measurements and scrapes arrive a few seconds apart)."""
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        for where, expr in dashboard_queries():
            problems += await unanswered(prometheus, where, expr, whole=True)
        for where, expr in alert_queries():
            problems += await unanswered(prometheus, where, expr, whole=False)
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(1)


async def alertmanager_alerts(alertmanager: Server) -> set[str]:
    return {alert["labels"]["alertname"] for alert in await alertmanager.get("/api/v2/alerts")}


async def test_every_panel_and_alert_reads_real_series_and_a_dead_worker_pages(
    deployment: WorkerHarness, tmp_path: Path
) -> None:
    worker = deployment
    handler = RecordingHandler(greylist={"grey@example.com"}, unknown={"gone@example.com"})
    async with smtp_server(handler) as smtp_port:
        deliverer = DelivererHarness(worker, smtp_port, {"TIDEMAIL_DELIVERY_MAX_ATTEMPTS": "1"})
        alertmanager = start_alertmanager(tmp_path)
        prometheus: Server | None = None
        try:
            await worker.start_with_trainer()
            await deliverer.start()
            targets = {
                "tidemail-worker": f"127.0.0.1:{worker.port}",
                "tidemail-trainer": f"127.0.0.1:{worker.settings.trainer_metrics_port}",
                "tidemail-deliverer": f"127.0.0.1:{deliverer.port}",
            }
            await alertmanager.wait_ready()
            prometheus = start_prometheus(
                tmp_path, targets, alertmanager.url.removeprefix("http://"), fast_alerts={"TidemailWorkerDown"}
            )
            await prometheus.wait_ready()
            await drive(worker, deliverer)

            assert await problems_once_scraped(prometheus) == []
            up = await prometheus.get("/api/v1/query", query="up")
            assert {(r["metric"]["job"], r["value"][1]) for r in up["data"]["result"]} == {
                (job, "1") for job in targets
            }
            ready = await prometheus.get("/api/v1/query", query='tidemail_ready{job="tidemail-worker"}')
            assert ready["data"]["result"][0]["value"][1] == "1"
            assert "TidemailWorkerDown" not in await alertmanager_alerts(alertmanager)

            worker.kill_hard()
            deadline = time.monotonic() + 30
            while "TidemailWorkerDown" not in await alertmanager_alerts(alertmanager):
                assert time.monotonic() < deadline, prometheus.log_path.read_text()[-3000:]
                await asyncio.sleep(0.5)
            fired = [
                a for a in await alertmanager.get("/api/v2/alerts") if a["labels"]["alertname"] == "TidemailWorkerDown"
            ]
            assert fired[0]["labels"]["instance"] == targets["tidemail-worker"]
            assert fired[0]["status"]["state"] == "active"
            assert fired[0]["annotations"]["runbook_url"] == "docs/runbook.md#tidemailworkerdown"
        finally:
            if prometheus is not None:
                prometheus.stop()
            alertmanager.stop()
            await deliverer.stop()
