"""A backfill through the real broker: a week of old events updates users and segments and
sends nothing; a fresh event still sends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.factories import event_doc, item
from tests.integration.harness import WorkerHarness, delete_deployment, email_jobs, keyed, produce, read_topic

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
USERS = [f"old{n}" for n in range(8)]


def week_of(user: str, start: int) -> list[dict[str, Any]]:
    """Signup, three outdoor page views, a cart and a click, a day apart from `start`."""
    signup = event_doc("signup", user, event_id=f"signup-{user}", ts=start)
    signup["context"] = {"email": f"{user}@example.com", "first_name": "Ann"}
    views = [
        event_doc("page_view", user, event_id=f"view-{user}-{day}", ts=start + day * DAY, category="outdoor")
        for day in (1, 2, 3)
    ]
    cart = event_doc("cart_add", user, event_id=f"cart-{user}", ts=start + 4 * DAY, cart_id=f"c-{user}", item=item())
    click = event_doc("click", user, event_id=f"click-{user}", ts=start + 5 * DAY)
    return [signup, *views, cart, click]


async def test_a_backfilled_week_sends_nothing_and_a_fresh_signup_sends(tmp_path: Path) -> None:
    worker = WorkerHarness(tmp_path, {"TIDEMAIL_MAX_TRIGGER_AGE": "24h", "TIDEMAIL_QUIET_HOURS": ""})
    s = worker.settings
    now = int(time.time() * 1000)
    backfill = [keyed(doc) for user in USERS for doc in week_of(user, now - 7 * DAY)]
    fresh = event_doc("signup", "newcomer", event_id="signup-newcomer", ts=now)
    fresh["context"] = {"email": "newcomer@example.com"}
    try:
        await worker.start()
        await produce(s.kafka_bootstrap, s.events_topic, backfill)
        await worker.wait_until_caught_up()
        # The segment checks the old events scheduled are past due: let the timers run them.
        await worker.advance_clock(MINUTE)
        await asyncio.sleep(1.5)  # several timer ticks
        await produce(s.kafka_bootstrap, s.events_topic, [keyed(fresh)])
        await worker.wait_until_caught_up()
        await asyncio.sleep(1.0)  # a job from the backfill would be published by now

        jobs = await email_jobs(s)
        assert [(job["user_id"], job["template"]) for job in jobs] == [("newcomer", "welcome")]

        status, profile = await worker.get(f"/users/{USERS[3]}")
        assert status == 200
        assert profile["counts"] == {"signup": 1, "page_view": 3, "cart_add": 1, "click": 1}
        assert {"outdoor_fans", "cart_abandoners"} <= profile["segments"].keys()
        assert profile["flows_entered"] == {}
        records = await read_topic(s.kafka_bootstrap, s.segment_changes_topic)
        changes = {(c["user_id"], c["segment"], c["change"]) for c in (orjson.loads(r.value) for r in records)}
        for user in USERS:
            assert {(user, "outdoor_fans", "entered"), (user, "cart_abandoners", "entered")} <= changes
            # First seen a week ago: a new visitor, no longer one by the worker's clock.
            assert {(user, "new_visitors", "entered"), (user, "new_visitors", "exited")} <= changes

        _, metrics = await worker.text("/metrics")
        # Each user's signup and cart would have started a run.
        assert f'tidemail_governance_decisions_total{{decision="stale_trigger"}} {2.0 * len(USERS)}' in metrics
        assert 'tidemail_governance_decisions_total{decision="allowed"} 1.0' in metrics
    finally:
        worker.stop()
        await delete_deployment(s)
