"""Producers nobody here wrote: librdkafka clients (confluent-kafka, kcat) with their default
partitioner, which places keys by CRC32 where the worker expects murmur2."""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlparse

import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer

from streams.core.partitioning import REROUTED_FROM_HEADER, partition_of
from streams.kafka.store import is_user_key
from tests.factories import event_doc
from tests.integration.harness import (
    PARTITIONS,
    WorkerHarness,
    assert_durable_state_is_single_pass,
    ensure_all_topics,
    keyed,
    read_topic,
    welcome_emails,
)

pytestmark = pytest.mark.integration

USERS = [f"crc-{n}" for n in range(24)]


def home(user: str) -> int:
    return partition_of(user.encode(), PARTITIONS)


def produce_with_confluent_kafka(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    # librdkafka's defaults, as a shop's producer has them: partitioner consistent_random (CRC32).
    producer = Producer({"bootstrap.servers": bootstrap})
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            errors.append(error)

    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == []


def produce_with_kcat(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    lines = b"".join(key + b"\t" + value + b"\n" for key, value in messages)
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t"], input=lines, check=True, timeout=60)


def fresh(kind: str, user: str) -> tuple[bytes, bytes]:
    # Timestamped now, so that no flow wait falls due during the test: the single-pass
    # check below replays events, not timers.
    doc = event_doc(kind, user, event_id=f"{kind}-{user}", ts=int(time.time() * 1000))
    if kind == "signup":
        doc["context"] = {"email": f"{user}@example.com", "first_name": "Ann"}
    return keyed(doc)


async def test_librdkafka_producers_cannot_split_a_user(worker: WorkerHarness) -> None:
    s = worker.settings
    await ensure_all_topics(s)
    produce_with_confluent_kafka(s.kafka_bootstrap, s.events_topic, [fresh("signup", user) for user in USERS])
    produce_with_kcat(
        s.kafka_bootstrap, s.events_topic, [fresh(kind, user) for user in USERS for kind in ("cart_add", "click")]
    )
    produced = await read_topic(s.kafka_bootstrap, s.events_topic)
    misplaced = [r for r in produced if r.partition != home(r.key.decode())]
    # Most keys land elsewhere under CRC32; with none, this test would prove nothing.
    assert len(misplaced) > len(produced) // 3

    await worker.start()
    await worker.wait_until_caught_up()

    events = await read_topic(s.kafka_bootstrap, s.events_topic)
    forwarded = [r for r in events if any(name == REROUTED_FROM_HEADER for name, _ in r.headers)]
    assert len(forwarded) == len(misplaced)
    assert all(r.partition == home(r.key.decode()) for r in forwarded)
    _, metrics = await worker.text("/metrics")
    assert f'tidemail_events_rerouted_total{{topic="{s.events_topic}"}} {float(len(misplaced))}' in metrics

    jobs = await welcome_emails(s)
    assert sorted(job["user_id"] for job in jobs) == sorted(USERS)
    for record in await read_topic(s.kafka_bootstrap, s.jobs_topic):
        assert record.partition == home(record.key.decode())
    for record in await read_topic(s.kafka_bootstrap, s.segment_changes_topic):
        assert record.partition == home(orjson.loads(record.value)["user_id"])

    # One state per user, on the partition every other producer and lookup uses.
    stored_in: dict[str, set[int]] = defaultdict(set)
    for record in await read_topic(s.kafka_bootstrap, f"{s.app_id}-users-changelog"):
        if is_user_key(record.key):
            stored_in[record.key.decode()].add(record.partition)
    assert stored_in == {user: {home(user)} for user in USERS}
    for user in USERS:
        status, profile = await worker.get(f"/users/{user}")
        assert status == 200
        assert profile["counts"] == {"signup": 1, "cart_add": 1, "click": 1}
    await assert_durable_state_is_single_pass(s)

    # The unsubscribe the worker publishes itself reaches the same state the flows read.
    user = misplaced[0].key.decode()
    [job] = [job for job in jobs if job["user_id"] == user]
    token = parse_qs(urlparse(job["unsubscribe_url"]).query)["token"][0]
    status, _ = await worker.text(f"/unsubscribe?token={token}", method="POST")
    assert status == 200
    profile = await worker.wait_for(lambda p: p["unsubscribed_lists"] == ["marketing"], f"/users/{user}", timeout=30)
    assert profile["counts"]["signup"] == 1
