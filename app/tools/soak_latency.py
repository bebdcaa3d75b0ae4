"""`tidemail soak --latency`: how long after an event is sent its state is durable and its
email job published, with the shipped 12 segments, at 1,000 and 5,000 events/s offered.

One worker in a deployment of its own. Each event is sent alone with its send instant
remembered; a welcome job names the signup that triggered it (`trigger_event_id`), so
event-to-job is the instant a consumer here receives the job less that send instant (an
upper bound: it includes the fetch). Event-to-durable is the worker's own measure (`/stats`:
from the event's Kafka timestamp to its batch being durable)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.faust_app import ensure_deployment_topics
from app.tools.common import get_json, keep_pace, metrics_text, verdict
from app.tools.fleet import Deployment, Fleet, Member
from app.tools.soak_report import buckets_grown, counter_total, histogram_quantile, percentile
from app.tools.soak_world import SoakWorld

RATES = (1_000, 5_000)
# Targets of issue 21: p99 event to job published.
JOB_P99_TARGETS_MS = {1_000: 50.0, 5_000: 100.0}


@dataclass(frozen=True, slots=True)
class Latency:
    offered: int
    achieved: float
    jobs: int
    job_p50_ms: float
    job_p99_ms: float
    durable_p50_ms: float
    durable_p99_ms: float
    # Event sent to the job handed to the worker's producer (its Kafka timestamp): the rest
    # of event-to-job is the transaction's commit and the consumer's fetch.
    made_p50_ms: float
    made_p99_ms: float
    # Each event partition's transaction, begun to committed (`tidemail_transaction_duration_seconds`).
    transaction_p50_ms: float
    transaction_p99_ms: float
    gc: GcPauses


@dataclass(frozen=True, slots=True)
class GcPauses:
    """The worker's garbage collections while the rate was offered (`tidemail_gc_pause_seconds`)."""

    collections: int
    total_ms: float
    # The upper bound of the bucket that holds the longest pause.
    longest_ms: float

    @classmethod
    def between(cls, before: str, after: str) -> GcPauses:
        name = "tidemail_gc_pause_seconds"
        grown = buckets_grown(before, after, name)
        collections = grown[-1][1] if grown else 0.0
        longest = next((bound for bound, count in grown if count >= collections), 0.0) if collections else 0.0
        total_s = counter_total(after, f"{name}_sum") - counter_total(before, f"{name}_sum")
        return cls(int(collections), total_s * 1000, longest * 1000)


async def run_latency(seconds: int, users: int, seed: int) -> list[Latency]:
    run_id = time.strftime("%Y%m%d%H%M%S")
    deployment = Deployment.create(f"soak-latency-{run_id}", Path(".cache/soak") / f"latency-{run_id}", partitions=8)
    await ensure_deployment_topics(deployment.settings)
    fleet = Fleet(deployment)
    try:
        worker = fleet.start_worker(1)
        await fleet.wait_ready(worker)
        world = SoakWorld(users, seed)
        stream = world.messages(sum(RATES) * seconds * 2, lambda: int(time.time() * 1000))
        results = []
        for rate in RATES:
            results.append(await _measure(deployment, worker, stream, rate, seconds))
            print(format_latency(results[-1]), flush=True)
        return results
    finally:
        fleet.stop_all()
        await deployment.remove()


async def _measure(
    deployment: Deployment, worker: Member, stream: Iterator[tuple[bytes, bytes]], rate: int, seconds: int
) -> Latency:
    settings = deployment.settings
    jobs = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, fetch_max_wait_ms=5, isolation_level="read_committed"
    )
    await jobs.start()
    jobs.assign([TopicPartition(settings.jobs_topic, p) for p in range(settings.partitions)])
    await jobs.seek_to_end()
    received: dict[str, tuple[float, float]] = {}
    reader = asyncio.create_task(_read_jobs(jobs, received))
    try:
        async with aiohttp.ClientSession(headers=deployment.admin_headers) as http:
            async with http.post(worker.url + "/stats/reset") as response:
                response.raise_for_status()
            metrics_before = await metrics_text(http, worker.url)
            sent_at, achieved = await _offer(settings.kafka_bootstrap, settings.events_topic, stream, rate, seconds)
            await asyncio.sleep(3)  # the last batches become durable and their jobs arrive
            stats = await get_json(http, worker.url + "/stats?percentiles") or {}
            metrics_after = await metrics_text(http, worker.url)
    finally:
        reader.cancel()
        await jobs.stop()
    transactions = buckets_grown(metrics_before, metrics_after, "tidemail_transaction_duration_seconds")
    delays = [int((received[e][0] - sent_at[e]) * 1000) for e in received if e in sent_at]
    made = [int((received[e][1] - sent_at[e]) * 1000) for e in received if e in sent_at]
    return Latency(
        rate,
        achieved,
        len(delays),
        percentile(delays, 50),
        percentile(delays, 99),
        float(stats.get("latency_p50_ms", 0.0)),
        float(stats.get("latency_p99_ms", 0.0)),
        percentile(made, 50),
        percentile(made, 99),
        (histogram_quantile(transactions, 0.5) or 0.0) * 1000,
        (histogram_quantile(transactions, 0.99) or 0.0) * 1000,
        GcPauses.between(metrics_before, metrics_after),
    )


async def _offer(
    bootstrap: str, topic: str, stream: Iterator[tuple[bytes, bytes]], rate: int, seconds: int
) -> tuple[dict[str, float], float]:
    """Send `rate` events a second for `seconds`, each on its own; the send instant of each signup."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent_at: dict[str, float] = {}
    started = time.monotonic()
    try:
        for n in range(rate * seconds):
            key, value = next(stream)
            if b'"type":"signup"' in value:
                sent_at[orjson.loads(value)["event_id"]] = time.time()
            await producer.send(topic, value, key=key)
            if n % 10 == 0:
                await keep_pace(n, rate, started)
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at, rate * seconds / (time.monotonic() - started)


async def _read_jobs(consumer: AIOKafkaConsumer, received: dict[str, tuple[float, float]]) -> None:
    """Each job's trigger: when the job arrived here and when the worker produced it."""
    async for record in consumer:
        job = orjson.loads(record.value)
        received.setdefault(job.get("trigger_event_id", ""), (time.time(), record.timestamp / 1000))


def format_latency(r: Latency) -> str:
    target = JOB_P99_TARGETS_MS.get(r.offered)
    against = f" (target p99 < {target:.0f} ms: {verdict(r.job_p99_ms < target)})" if target else ""
    return (
        f"at {r.offered:,} events/s offered ({r.achieved:,.0f} sent): event to job published p50 "
        f"{r.job_p50_ms:.0f} ms, p99 {r.job_p99_ms:.0f} ms over {r.jobs:,} welcome jobs{against} (to the job "
        f"produced, before its transaction commits: p50 {r.made_p50_ms:.0f} ms, p99 {r.made_p99_ms:.0f} ms); "
        f"event to state durable p50 {r.durable_p50_ms:.0f} ms, p99 {r.durable_p99_ms:.0f} ms; "
        f"a partition's transaction p50 {r.transaction_p50_ms:.1f} ms, p99 {r.transaction_p99_ms:.1f} ms; "
        f"{r.gc.collections} garbage collections stopped the worker {r.gc.total_ms:.0f} ms in all, "
        f"the longest <= {r.gc.longest_ms:.0f} ms"
    )
