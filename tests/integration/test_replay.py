"""Replay tooling through the real broker: dead letters after a fix, and a time range into a fresh deployment."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from app.tools.replay import REPLAYED_FROM_HEADER
from tests.factories import encoded, event_doc
from tests.integration.harness import (
    ROOT,
    WorkerHarness,
    delete_deployment,
    ensure_all_topics,
    keyed,
    produce,
    read_topic,
)

pytestmark = pytest.mark.integration


def tidemail(worker: WorkerHarness, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=worker.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def big_signup(user: str) -> tuple[bytes, bytes]:
    doc = event_doc("signup", user, ts=int(time.time() * 1000))
    doc["context"] = {"email": f"{user}@example.com", "first_name": "Ann", "locale": "en-GB" + "-x" * 60}
    return user.encode(), encoded(doc)


async def test_dead_letters_replayed_after_a_fix_are_applied_with_their_headers(tmp_path: Path) -> None:
    # The "bug": a size limit too small for real events. The "fix": the default limit.
    strict = WorkerHarness(tmp_path / "strict", {"TIDEMAIL_MAX_EVENT_BYTES": "300"})
    (tmp_path / "strict").mkdir()
    s = strict.settings
    try:
        await ensure_all_topics(s)
        await produce(
            s.kafka_bootstrap, s.events_topic, [big_signup(f"big-{n}") for n in range(3)], [("trace", b"t-1")]
        )
        await produce(s.kafka_bootstrap, s.events_topic, [(b"broken", b"{not json")])
        await strict.start()
        await strict.wait_until_caught_up()
        strict.stop()

        listed = tidemail(strict, "dead-letters", "list")
        assert "3 matching" not in listed and "invalid_event 4" in listed
        assert "3 dead letters of kind" not in tidemail(
            strict, "dead-letters", "replay", "--kind", "invalid_event", "--dry-run"
        )

        fixed = strict.sibling(tmp_path / "fixed")
        fixed.env.pop("TIDEMAIL_MAX_EVENT_BYTES")
        fixed.env["TIDEMAIL_WEB_PORT"] = str(fixed.port)
        await fixed.start()
        out = tidemail(fixed, "dead-letters", "replay", "--kind", "invalid_event")
        assert "replayed 4 dead letters of kind invalid_event" in out
        await fixed.wait_until_caught_up()
        for n in range(3):
            status, profile = await fixed.get(f"/users/big-{n}")
            assert status == 200 and profile["counts"] == {"signup": 1}
        replayed = [
            r for r in await read_topic(s.kafka_bootstrap, s.events_topic) if dict(r.headers).get(REPLAYED_FROM_HEADER)
        ]
        assert len(replayed) == 4
        assert all(dict(r.headers).get("trace") == b"t-1" for r in replayed if r.key != b"broken")
        assert not any(name.startswith("tidemail.kind") for r in replayed for name, _ in r.headers)
        fixed.stop()
    finally:
        strict.stop()
        await delete_deployment(s)


async def test_a_time_range_replays_into_a_fresh_deployment(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = WorkerHarness(tmp_path / "old"), WorkerHarness(tmp_path / "new")
    try:
        await ensure_all_topics(old.settings)
        await ensure_all_topics(new.settings)
        now = int(time.time() * 1000)
        batches = [[keyed(event_doc("click", f"r{batch}-{n}", ts=now)) for n in range(5)] for batch in range(3)]
        marks = []
        for batch in batches:
            await produce(old.settings.kafka_bootstrap, old.settings.events_topic, batch)
            await asyncio.sleep(1.1)
            marks.append(datetime.now(UTC).isoformat())
        # Batch 1 only: written after the first mark and before the second.
        out = tidemail(
            new, "replay", "--from-topic", old.settings.events_topic, "--since", marks[0], "--until", marks[1]
        )
        assert "replayed 5 records" in out
        users = sorted(
            orjson.loads(r.value)["user_id"]
            for r in await read_topic(new.settings.kafka_bootstrap, new.settings.events_topic)
        )
        assert users == [f"r1-{n}" for n in range(5)]
    finally:
        await delete_deployment(old.settings)
        await delete_deployment(new.settings)
