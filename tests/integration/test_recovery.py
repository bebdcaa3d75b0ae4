"""kill -9 mid-stream, restart: state equals processing every event exactly once, and
no job carries a new id for an old trigger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import islice
from pathlib import Path

import orjson
import pytest

from app.tools.generator import EventGenerator
from tests.integration.harness import (
    WorkerHarness,
    assert_durable_state_is_single_pass,
    delete_deployment,
    email_jobs,
    ensure_all_topics,
    produce,
    read_topic,
)

pytestmark = pytest.mark.integration

EVENTS = 40_000


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[WorkerHarness]:
    harness = WorkerHarness(
        tmp_path,
        env_overrides={
            # Small batches keep the worker mid-stream long enough to be killed there.
            "TIDEMAIL_BATCH_MAX_RECORDS": "100",
            # With the event-id window at one, only the partition checkpoints and the
            # per-user applied offsets stand between a replay and double counting.
            "TIDEMAIL_DEDUPE_WINDOW": "1",
        },
    )
    yield harness
    harness.stop()
    await delete_deployment(harness.settings)


async def test_kill_9_mid_stream_then_restart_gives_exactly_once_state(worker: WorkerHarness) -> None:
    s = worker.settings
    await ensure_all_topics(s)
    await produce(s.kafka_bootstrap, s.events_topic, islice(EventGenerator(users=3_000, seed=5).messages(), EVENTS))

    await worker.start()
    await worker.wait_for(lambda stats: stats["processed"] >= EVENTS // 4, "/stats", timeout=60)
    worker.kill_hard()
    assert await worker.committed_total() < EVENTS, "the worker finished before it could be killed mid-stream"
    await worker.start()
    await worker.wait_until_caught_up()

    expected = await assert_durable_state_is_single_pass(s)

    job_ids = [job["job_id"] for job in await email_jobs(s)]
    assert sorted(job_ids) == sorted(job["job_id"] for job in expected.outputs.jobs), (
        "a job was lost or published twice"
    )
    change_ids = [
        orjson.loads(r.value)["change_id"] for r in await read_topic(s.kafka_bootstrap, s.segment_changes_topic)
    ]
    assert change_ids, "the generated stream should move users between segments"
    assert sorted(change_ids) == sorted(
        i for _, moved in expected.outputs.segment_transitions for i in moved.change_ids()
    ), "a change was lost or doubled"
