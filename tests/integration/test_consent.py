"""Consent through the real broker: with consent required, a signup without a recorded
`subscribe` gets no welcome email, one with it does, and an unsubscribe after the consent
withdraws it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.factories import event_doc
from tests.integration.harness import WorkerHarness, delete_deployment, email_jobs, keyed, produce

pytestmark = pytest.mark.integration


def signup(user: str, ts: int) -> dict[str, Any]:
    doc = event_doc("signup", user, event_id=f"signup-{user}", ts=ts)
    doc["context"] = {"email": f"{user}@example.com", "first_name": "Ann"}
    return doc


def consent(kind: str, user: str, ts: int) -> dict[str, Any]:
    return event_doc(kind, user, event_id=f"{kind}-{user}", ts=ts, list="marketing")


async def test_with_consent_required_only_the_consenting_signup_is_welcomed(tmp_path: Path) -> None:
    worker = WorkerHarness(tmp_path, {"TIDEMAIL_REQUIRE_CONSENT": "true", "TIDEMAIL_QUIET_HOURS": ""})
    s = worker.settings
    now = int(time.time() * 1000)
    events = [
        signup("silent", now),
        consent("subscribe", "agreed", now - 10),
        signup("agreed", now),
        consent("subscribe", "withdrew", now - 20),
        consent("unsubscribe", "withdrew", now - 10),
        signup("withdrew", now),
    ]
    try:
        await worker.start()
        await produce(s.kafka_bootstrap, s.events_topic, [keyed(doc) for doc in events])
        await worker.wait_until_caught_up()

        jobs = await email_jobs(s)
        assert [(job["user_id"], job["template"]) for job in jobs] == [("agreed", "welcome")]
        status, profile = await worker.get("/users/agreed")
        assert status == 200
        assert profile["subscriptions"]["marketing"]["source"] == "checkout"
        _, metrics = await worker.text("/metrics")
        assert 'tidemail_governance_decisions_total{decision="no_consent"} 1.0' in metrics
        assert 'tidemail_governance_decisions_total{decision="unsubscribed"} 1.0' in metrics
    finally:
        worker.stop()
        await delete_deployment(s)
