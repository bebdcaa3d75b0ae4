"""Two workers share the partitions; a hand-off mid-stream loses and doubles nothing."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from app.tools.generator import EventGenerator
from tests.integration.harness import (
    PARTITIONS,
    WorkerHarness,
    assert_durable_state_is_single_pass,
    delete_deployment,
    ensure_all_topics,
    produce,
)

pytestmark = pytest.mark.integration


async def test_second_worker_takes_over_half_the_partitions_mid_stream(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = WorkerHarness(tmp_path / "a", env_overrides={"TIDEMAIL_BATCH_MAX_RECORDS": "200"})
    second = first.sibling(tmp_path / "b")
    s = first.settings
    try:
        await ensure_all_topics(s)
        messages = EventGenerator(users=2_000, seed=9).messages()
        await produce(s.kafka_bootstrap, s.events_topic, islice(messages, 15_000))
        await first.start()
        await second.start()
        await produce(s.kafka_bootstrap, s.events_topic, islice(messages, 15_000))
        await first.wait_until_caught_up()

        _, health_a = await first.get("/health")
        _, health_b = await second.get("/health")
        owned_a, owned_b = set(health_a["owned_partitions"]), set(health_b["owned_partitions"])
        assert owned_a and owned_b and not owned_a & owned_b
        assert owned_a | owned_b == set(range(PARTITIONS))

        await assert_durable_state_is_single_pass(s)
    finally:
        first.stop()
        second.stop()
        await delete_deployment(s)
