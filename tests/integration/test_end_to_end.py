"""Events in at one end of the real broker, jobs, state and dead letters out at the other."""

from __future__ import annotations

import pytest

from streams.core.flow_engine import job_id
from streams.kafka.topics import ensure_topics
from tests.factories import encoded, event_doc
from tests.integration.harness import (
    WorkerHarness,
    ensure_all_topics,
    keyed,
    produce,
    read_topic,
    signup,
    welcome_emails,
)

pytestmark = pytest.mark.integration


async def test_signups_become_welcome_jobs_and_state_is_served(worker: WorkerHarness) -> None:
    await worker.start()
    s = worker.settings
    await produce(
        s.kafka_bootstrap,
        s.events_topic,
        [
            signup("ann", "Ann"),
            signup("nameless", None),
            keyed(event_doc("page_view", "ann", event_id="v1")),
            keyed(event_doc("cart_add", "ann", event_id="c1")),
        ],
    )
    await worker.wait_until_caught_up()
    jobs = {job["user_id"]: job for job in await welcome_emails(s)}
    assert set(jobs) == {"ann", "nameless"}
    assert jobs["ann"]["job_id"] == job_id("welcome", 1, "ann", "ann")
    assert jobs["ann"]["subject"] == "Welcome to Tidemail Shop, Ann!"
    assert "Hi there," in jobs["nameless"]["html"]
    assert jobs["ann"]["to"] == "ann@example.com"
    assert jobs["ann"]["trigger_event_id"] == event_doc("signup", "ann")["event_id"]

    status, profile = await worker.get("/users/ann")
    assert status == 200
    assert profile["counts"] == {"signup": 1, "page_view": 1, "cart_add": 1}
    assert profile["cart"]["items"]["OUT-001"]["quantity"] == 1
    status, _ = await worker.get("/users/nobody")
    assert status == 404


async def test_bad_messages_are_dead_lettered_while_good_ones_around_them_apply(worker: WorkerHarness) -> None:
    await worker.start()
    s = worker.settings
    oversized = encoded({**event_doc("click", "bob", event_id="big"), "padding": "x" * 70_000})
    bad = [
        (b"bob", b"{not json"),
        (b"bob", encoded({**event_doc("click", "bob", event_id="t"), "type": "teleport"})),
        (b"bob", oversized),
        (b"mallory", encoded(event_doc("click", "bob", event_id="wrong-key"))),
        (b"bob", None),
    ]
    good = [keyed(event_doc("click", "bob", event_id=f"ok{n}")) for n in range(len(bad) + 1)]
    interleaved = [msg for pair in zip(good, bad, strict=False) for msg in pair] + [good[-1]]
    await produce(s.kafka_bootstrap, s.events_topic, interleaved)
    await worker.wait_until_caught_up()

    _, profile = await worker.get("/users/bob")
    assert profile["counts"] == {"click": len(good)}
    dead = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
    assert len(dead) == len(bad)
    by_value = {r.value: dict(r.headers) for r in dead}
    assert by_value[b"{not json"][("tidemail.kind")] == b"invalid_event"
    assert by_value[oversized]["tidemail.reason"].startswith(b"message is ")
    reasons = [h["tidemail.reason"].decode() for h in by_value.values()]
    assert any("`type` must be one of" in r for r in reasons)
    assert any("message key must equal `user_id`" in r for r in reasons)
    assert any("message has no value" in r for r in reasons)
    for headers in by_value.values():
        assert headers["tidemail.source.topic"] == s.events_topic.encode()
        assert int(headers["tidemail.source.offset"]) >= 0

    _, metrics = await worker.text("/metrics")
    assert 'tidemail_dead_letters_total{kind="invalid_event"} 5.0' in metrics


async def test_a_job_a_lost_batch_already_published_is_not_published_again(worker: WorkerHarness) -> None:
    s = worker.settings
    await ensure_all_topics(s)
    welcome = job_id("welcome", 1, "dora", "dora")
    # As if a previous owner published the job and died before its checkpoint was durable.
    await produce(
        s.kafka_bootstrap,
        s.jobs_topic,
        [(b"dora", b'{"job_id": "earlier"}')],
        headers=[("tidemail.id", welcome.encode())],
    )
    await produce(s.kafka_bootstrap, s.events_topic, [signup("dora", "Dora"), signup("eve", "Eve")])
    await worker.start()
    await worker.wait_until_caught_up()
    assert sorted(job["job_id"] for job in await welcome_emails(s)) == sorted(
        ["earlier", job_id("welcome", 1, "eve", "eve")]
    )


async def test_worker_refuses_an_output_topic_partitioned_differently(worker: WorkerHarness) -> None:
    s = worker.settings
    await ensure_topics(s.kafka_bootstrap, 2, 1, [s.segment_changes_topic])
    with pytest.raises(AssertionError, match="worker exited"):
        await worker.start()
    assert f"topic {s.segment_changes_topic!r} has 2 partitions but TIDEMAIL_PARTITIONS is 4" in worker.log_tail()
