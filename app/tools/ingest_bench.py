"""`tidemail bench`'s HTTP ingestion section: events/s through Segment's `/v1/batch` and request
latency, against a separately started `tidemail ingest` on a deployment of its own.

The load comes from this process (asyncio and aiohttp) with request bodies built beforehand, so
little of the machine goes to making it. Throughput is closed-loop: a few connections each
send the next batch as soon as the last was answered, and an event counts once the server
answered 200, which it does only after the broker acknowledged it. Latency is open-loop
(api_bench's method): each request at its scheduled instant, timed from that instant.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.tools.api_bench import LoadResult
from app.tools.common import (
    delete_topics,
    deployment_env,
    freeze_heap,
    get_json,
    launch,
    stop_processes,
    tidemail_command,
    wait_until,
)

INGEST_PORT = 6175
WRITE_KEY = "bench-write-key"
BATCH_EVENTS = 100
# Distinct request bodies, sent round-robin (the events repeat; no worker reads them).
BODIES = 200
THROUGHPUT_SECONDS = 15.0
THROUGHPUT_CONNECTIONS = 8
LATENCY_RATE = 2_000  # events/s
LATENCY_SECONDS = 10.0
USERS = 50_000


@dataclass(frozen=True, slots=True)
class Throughput:
    events: int
    seconds: float
    errors: int
    in_topic: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass(frozen=True, slots=True)
class IngestResults:
    throughput: Throughput
    latency: list[LoadResult]


async def run_ingest_bench(partitions: int) -> IngestResults:
    """Start `tidemail ingest` on a fresh deployment, load it, and drop the deployment."""
    run_id = time.strftime("%Y%m%d%H%M%S")
    env = deployment_env(run_id, "ingest", partitions, INGEST_PORT + 1)
    env.update(TIDEMAIL_WRITE_KEYS=WRITE_KEY, TIDEMAIL_INGEST_PORT=str(INGEST_PORT))
    workdir = Path(env["TIDEMAIL_DATA_DIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{INGEST_PORT}"
    process = launch(tidemail_command("ingest"), workdir / "ingest.log", env)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    try:
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: get_json(http, base + "/health"), lambda health: True, 60, "tidemail ingest")
        calls = segment_calls(random.Random(17))
        batches = [_batch_body(calls) for _ in range(BODIES)]
        singles = [orjson.dumps(call) for call in itertools.islice(calls, BODIES * 3) if call["type"] == "track"]
        freeze_heap()
        print(f"\n== HTTP ingestion: /v1/batch of {BATCH_EVENTS} for {THROUGHPUT_SECONDS:.0f} s", flush=True)
        throughput = await _throughput(base + "/v1/batch", batches, headers)
        requests = LATENCY_RATE // BATCH_EVENTS
        latency = [
            await _paced(
                f"/v1/batch of {BATCH_EVENTS} at {requests}/s", base + "/v1/batch", batches, requests, headers
            ),
            await _paced(f"/v1/track at {LATENCY_RATE:,}/s", base + "/v1/track", singles, LATENCY_RATE, headers),
        ]
        events = await _topic_size(env["TIDEMAIL_KAFKA_BOOTSTRAP"], env["TIDEMAIL_EVENTS_TOPIC"], partitions)
        return IngestResults(Throughput(throughput.events, throughput.seconds, throughput.errors, events), latency)
    finally:
        stop_processes([process])
        await delete_topics(env["TIDEMAIL_KAFKA_BOOTSTRAP"], f"bench-{run_id}")


def segment_calls(rng: random.Random) -> Iterator[dict[str, Any]]:
    """Segment calls as a shop's SDK sends them: mostly product views and pages, some carts,
    orders, sign-ups and identifies, from `USERS` users."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    for n in range(1_000_000_000):
        user = f"bench-{rng.randrange(USERS):06d}"
        sku = f"SKU-{rng.randrange(2_000):04d}"
        product = {"sku": sku, "name": f"Item {sku}", "category": f"cat-{rng.randrange(20)}", "price": 19.9}
        call: dict[str, Any] = {"userId": user, "messageId": f"bench-{n:012d}", "timestamp": started}
        call["context"] = {"library": {"name": "analytics-python", "version": "2.4.0"}, "locale": "en-GB"}
        roll = rng.random()
        if roll < 0.45:
            call.update(type="track", event="Product Viewed", properties={**product, "url": f"/p/{sku}"})
        elif roll < 0.70:
            call.update(type="page", name="Home", properties={"url": "https://shop.example.com/"})
        elif roll < 0.85:
            call.update(type="track", event="Product Added", properties={**product, "cart_id": f"c-{user}"})
        elif roll < 0.92:
            order = {"order_id": f"o-{n}", "total": 19.9, "currency": "EUR", "products": [product]}
            call.update(type="track", event="Order Completed", properties=order)
        elif roll < 0.96:
            call.update(type="track", event="Signed Up", properties={"type": "organic", "email": f"{user}@example.com"})
        else:
            call.update(type="identify", traits={"email": f"{user}@example.com", "firstName": "Ann", "plan": "pro"})
        yield call
    raise AssertionError("a billion calls are more than any bench sends")


def _batch_body(calls: Iterator[dict[str, Any]]) -> bytes:
    batch = [next(calls) for _ in range(BATCH_EVENTS)]
    return orjson.dumps({"batch": batch, "sentAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())})


@dataclass(slots=True)
class _Tally:
    events: int = 0
    errors: int = 0
    seconds: float = 0.0


async def _throughput(url: str, bodies: list[bytes], headers: dict[str, str]) -> _Tally:
    tally = _Tally()
    connector = aiohttp.TCPConnector(limit=THROUGHPUT_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        started = time.perf_counter()
        deadline = started + THROUGHPUT_SECONDS

        async def sender(offset: int) -> None:
            n = offset
            while time.perf_counter() < deadline:
                async with http.post(url, data=bodies[n % len(bodies)]) as response:
                    await response.read()
                    if response.status == 200:
                        tally.events += BATCH_EVENTS
                    else:
                        tally.errors += 1
                n += THROUGHPUT_CONNECTIONS

        await asyncio.gather(*(sender(offset) for offset in range(THROUGHPUT_CONNECTIONS)))
        tally.seconds = time.perf_counter() - started
    return tally


async def _paced(name: str, url: str, bodies: list[bytes], rate: int, headers: dict[str, str]) -> LoadResult:
    """Requests at `rate` per second for LATENCY_SECONDS, each timed from its scheduled instant."""
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200), headers=headers) as http:

        async def one(body: bytes, scheduled: float) -> None:
            nonlocal errors
            try:
                async with http.post(url, data=body) as response:
                    await response.read()
                    errors += response.status != 200
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - scheduled) * 1000)

        started = time.perf_counter()
        tasks = []
        for n in range(int(rate * LATENCY_SECONDS)):
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[n % len(bodies)], scheduled)))
        await asyncio.gather(*tasks)
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    return LoadResult(name, len(latencies), errors, p50, p99, latencies[-1])


async def _topic_size(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def report_ingest(results: IngestResults) -> str:
    t = results.throughput
    lines = [
        "",
        f"HTTP ingestion (tidemail ingest): {t.events:,} events in {t.seconds:.1f} s through /v1/batch of "
        f"{BATCH_EVENTS} over {THROUGHPUT_CONNECTIONS} connections: {t.rate:,.0f} events/s (target >= 10,000), "
        f"{t.errors} failed requests; {t.in_topic:,} events in the topic after every run",
        f"{'at ' + format(LATENCY_RATE, ',') + ' events/s':<32}{'requests':>10}{'errors':>8}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}",
        *(
            f"{r.name:<32}{r.requests:>10,}{r.errors:>8}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.max_ms:>9.1f}"
            for r in results.latency
        ),
        f"ingest p99 {results.latency[0].p99_ms:.1f} ms at {LATENCY_RATE:,} events/s in batches of {BATCH_EVENTS} "
        "(target < 50 ms)",
    ]
    return "\n".join(lines)
