"""Two workers share the partitions; a hand-off mid-stream loses and doubles nothing."""

from __future__ import annotations

from collections import defaultdict
from itertools import islice
from pathlib import Path

import pytest

from app.faust_app import build_processor
from app.generator import EventGenerator
from streams.pipeline import InputRecord
from streams.state import UserState, decode_state, encode_state
from streams.store import CHECKPOINT_KEY
from streams.topics import ensure_topics
from tests.integration.harness import PARTITIONS, WorkerHarness, produce, read_topic

pytestmark = pytest.mark.integration


async def test_second_worker_takes_over_half_the_partitions_mid_stream(tmp_path: Path) -> None:
    first = WorkerHarness(tmp_path / "a", env_overrides={"TIDEMAIL_BATCH_MAX_RECORDS": "200"})
    second_env = {key: first.env[key] for key in first.env if key.startswith("TIDEMAIL_") and "PORT" not in key}
    second = WorkerHarness(tmp_path / "b", env_overrides={**second_env, "TIDEMAIL_DATA_DIR": str(tmp_path / "b" / "worker")})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    s = first.settings
    try:
        await ensure_topics(s.kafka_bootstrap, PARTITIONS, 1, [s.events_topic, s.jobs_topic, s.dead_letter_topic], s.events_topic)
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

        records = await read_topic(s.kafka_bootstrap, s.events_topic)
        by_partition: dict[int, list[InputRecord]] = defaultdict(list)
        for r in records:
            by_partition[r.partition].append(InputRecord(r.partition, r.offset, r.key, r.value, r.timestamp))
        expected = build_processor(s).process(by_partition, lambda partition, user: None)
        durable: dict[str, UserState] = {}
        for r in await read_topic(s.kafka_bootstrap, f"{s.app_id}-users-changelog"):
            if r.key != CHECKPOINT_KEY:
                durable[r.key.decode()] = decode_state(r.value)
        expected_states = {user: state for states in expected.states.values() for user, state in states.items()}
        assert set(durable) == set(expected_states)
        assert [u for u, st in expected_states.items() if decode_state(encode_state(st)) != durable[u]] == []
    finally:
        first.stop()
        second.stop()
