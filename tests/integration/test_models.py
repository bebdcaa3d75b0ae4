"""The models through the real broker and Redis: the trainer process's snapshots,
recommendations ranked on the worker, send time, propensity, bandits, the cache and its
invalidation, and a trainer's restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis

from models.ranking import REASONS
from tests.factories import event_doc, item
from tests.integration.harness import (
    WorkerHarness,
    delete_deployment,
    ensure_all_topics,
    free_port,
    keyed,
    produce,
    signup,
    welcome_emails,
)

pytestmark = pytest.mark.integration


def shopping(user: str, side: str, rounds: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    """Users of one side add that side's products to carts and view them."""
    events = []
    for r in range(start, start + rounds):
        sku = f"{side}-{r % 8}"
        events.append(
            keyed(event_doc("cart_add", user, event_id=f"{user}-c{r}", cart_id=f"{user}-cart", item=item(sku=sku)))
        )
        events.append(keyed(event_doc("page_view", user, event_id=f"{user}-v{r}", sku=sku, category=side)))
    return events


async def cached_keys(worker: WorkerHarness) -> list[bytes]:
    client = redis.from_url(worker.settings.redis_url)
    try:
        return sorted(await client.keys(f"tidemail:{worker.settings.app_id}:predictions:*"))
    finally:
        await client.aclose()


async def wait_for_snapshot(worker: WorkerHarness, items: int) -> dict[str, Any]:
    body = await worker.wait_for(lambda b: b["recommendations"]["items"] >= items, "/models", timeout=60)
    return body["recommendations"]  # type: ignore[no-any-return]


async def test_trained_snapshots_shape_recommendations_cached_until_the_next_event(worker: WorkerHarness) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    events = [e for n in range(12) for e in shopping(f"a{n}", "AAA", 8)]
    events += [e for n in range(12) for e in shopping(f"b{n}", "BBB", 8)]
    await produce(s.kafka_bootstrap, s.events_topic, events)
    await worker.wait_until_caught_up()
    status = await wait_for_snapshot(worker, 16)
    assert status["products"] == 16 and status["snapshot_age_s"] is not None

    code, body = await worker.get("/users/a0/recommendations?k=4")
    assert code == 200, body
    # a0 has every AAA product in the cart: nothing owned is offered; the picks are the
    # user's own (their category's, what follows what they touched), not the fleet's top list.
    assert {i["reason"] for i in body["items"]} <= set(REASONS) - {"popular"}
    assert all(i["sku"].startswith("BBB") for i in body["items"]) and body["items"][0]["name"]
    assert (await worker.get("/users/newcomer/recommendations?k=3"))[1]["items"][0]["reason"] == "popular"
    assert (await worker.get("/users/a0/recommendations?k=0"))[0] == 400

    again = await worker.get("/users/a0/recommendations?k=4")
    assert again == (code, body)
    _, metrics = await worker.text("/metrics")
    assert 'tidemail_prediction_cache_total{outcome="hit"} 1.0' in metrics
    assert any(key.endswith(b":a0") for key in await cached_keys(worker))

    # The user's next event drops their cached answers.
    await produce(
        s.kafka_bootstrap, s.events_topic, [keyed(event_doc("page_view", "a0", event_id="late", sku="BBB-1"))]
    )
    await worker.wait_until_caught_up()
    assert not any(key.endswith(b":a0") for key in await cached_keys(worker))

    models = (await worker.get("/models"))[1]["recommendations"]
    assert models["weights"]["purchase"] == 8.0 and models["snapshot_offset"] > 0


async def test_a_new_trainer_resumes_from_the_last_snapshot(worker: WorkerHarness) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    await produce(s.kafka_bootstrap, s.events_topic, [e for n in range(6) for e in shopping(f"a{n}", "AAA", 8)])
    await worker.wait_until_caught_up()
    first = await wait_for_snapshot(worker, 8)

    worker.kill_trainer_hard()
    worker.kill_hard()
    await worker.start()
    # The restarted worker ranks with the last snapshot before any trainer is back.
    resumed = await wait_for_snapshot(worker, 8)
    assert resumed["snapshot_offset"] >= first["snapshot_offset"]
    worker.start_trainer()
    await produce(s.kafka_bootstrap, s.events_topic, [e for n in range(6) for e in shopping(f"b{n}", "BBB", 8)])
    await worker.wait_until_caught_up()
    grown = await wait_for_snapshot(worker, 16)
    # The new trainer went on from where the snapshot left off: every AAA item is still known.
    assert grown["products"] == 16
    code, body = await worker.get("/users/b0/recommendations?k=8")
    assert code == 200 and {i["sku"] for i in body["items"]} >= {f"AAA-{n}" for n in range(4)}


async def test_best_send_hour_follows_the_users_opens_and_new_users_get_the_fleets(worker: WorkerHarness) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    tuesday_9_tokyo = 1_796_688_000_000  # 2026-12-08T00:00:00Z = Tuesday 09:00 in Tokyo
    week = 7 * 86_400_000
    events = [signup("kei", "Kei", timezone="Asia/Tokyo")]
    events += [
        keyed(event_doc("email_open", "kei", event_id=f"open{n}", ts=tuesday_9_tokyo - n * week)) for n in range(5)
    ]
    await produce(s.kafka_bootstrap, s.events_topic, events)
    await worker.wait_until_caught_up()
    # Opens reach the fleet prior through the trainer's next snapshot.
    body = await worker.wait_for(
        lambda b: b["send_time"] is not None and b["send_time"]["hour"] == 9, "/users/newcomer/predictions", 60
    )
    # The fleet's hour of the day, and no day: nothing of the newcomer's own names one.
    assert (body["send_time"]["own_engagements"], body["send_time"]["weekday"]) == (0, None)

    code, body = await worker.get("/users/kei/predictions")
    assert code == 200, body
    send = body["send_time"]
    assert (send["hour"], send["weekday"], send["local"], send["timezone"]) == (9, "Tue", "Tue 09:00", "Asia/Tokyo")
    assert send["own_engagements"] == 5.0 and send["next_send_at"].endswith(":00:00.000Z")


async def test_without_redis_the_api_answers_from_the_tables(tmp_path: Path) -> None:
    worker = WorkerHarness(tmp_path, {"TIDEMAIL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        await ensure_all_topics(worker.settings)
        await worker.start()
        s = worker.settings
        await produce(s.kafka_bootstrap, s.events_topic, shopping("a0", "AAA", 4))
        await worker.wait_until_caught_up()
        for _ in range(2):
            code, body = await worker.get("/users/a0/recommendations?k=3")
            assert code == 200 and body["user_id"] == "a0"
        assert (await worker.get("/users/a0/predictions"))[0] == 200
        _, metrics = await worker.text("/metrics")
        assert 'tidemail_prediction_cache_total{outcome="unavailable"} 3.0' in metrics
        assert 'outcome="hit"' not in metrics
    finally:
        worker.stop()
        await delete_deployment(worker.settings)


async def test_propensity_learns_from_probes_the_clock_closes(worker: WorkerHarness) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    now = int(time.time() * 1000)
    events = []
    for n in range(40):
        user = f"p{n}"
        events.append(keyed(event_doc("page_view", user, event_id=f"{user}-v", ts=now)))
        if n % 2 == 0:  # half of them open an email the next day
            events.append(keyed(event_doc("email_open", user, event_id=f"{user}-o", ts=now + 86_400_000)))
    await produce(s.kafka_bootstrap, s.events_topic, events)
    await worker.wait_until_caught_up()
    await worker.advance_clock(8 * 86_400_000)
    models = await worker.wait_for(lambda b: b["propensity"].get("examples") == 40, "/models", timeout=60)
    assert set(models["propensity"]) == {"examples", "open", "click", "purchase"}
    code, body = await worker.get("/users/p0/predictions")
    assert code == 200 and set(body["propensity"]) == {"open_7d", "click_7d", "purchase_7d"}
    assert 0.0 < body["propensity"]["open_7d"] < 1.0


async def test_bandit_rewards_from_opens_reach_the_experiment(worker: WorkerHarness) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    await produce(s.kafka_bootstrap, s.events_topic, [signup(f"s{n}", f"S{n}") for n in range(20)])
    await worker.wait_until_caught_up()
    jobs = await welcome_emails(s)
    assert len(jobs) == 20 and {j["experiment"] for j in jobs} == {"welcome_preheader"}
    opened = [j for j in jobs if j["variant"] == "picks"]
    opens = [
        keyed(event_doc("email_open", j["user_id"], event_id=f"open-{j['user_id']}", job_id=j["job_id"]))
        for j in opened
    ]
    await produce(s.kafka_bootstrap, s.events_topic, opens)
    await worker.wait_until_caught_up()

    def settled(body: dict[str, Any]) -> bool:
        variants = body["variants"]
        return sum(v["sends"] for v in variants.values()) == 20 and variants["picks"]["opens"] == len(opened)

    body = await worker.wait_for(settled, "/experiments/welcome_preheader", timeout=60)
    picks, promise = body["variants"]["picks"], body["variants"]["promise"]
    assert picks["rewarded"] == len(opened) and promise["rewarded"] == 0
    assert picks["alpha"] == 1 + len(opened) and promise["alpha"] == 1
    assert (await worker.get("/experiments/nope"))[0] == 404


async def test_the_catalogue_withdraws_products_from_recommendations(worker: WorkerHarness) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    await produce(s.kafka_bootstrap, s.events_topic, [e for n in range(4) for e in shopping(f"a{n}", "AAA", 8)])
    await worker.wait_until_caught_up()
    await wait_for_snapshot(worker, 8)
    withdrawn = {"name": "Item AAA-1", "category": "outdoor", "price": 1.0, "available": False}
    await produce(s.kafka_bootstrap, s.catalog_topic, [(b"AAA-1", orjson.dumps(withdrawn))])

    def without_it(body: dict[str, Any]) -> bool:
        return body["items"] and "AAA-1" not in {i["sku"] for i in body["items"]}

    body = await worker.wait_for(without_it, "/users/newcomer/recommendations?k=8", timeout=60)
    assert len(body["items"]) == 7
