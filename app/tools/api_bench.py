"""Latency of the prediction API under a steady load, against `/health` at the same rate.

A worker and a trainer run on a fresh deployment holding 5,000 generated users; requests
are sent open-loop (each at its scheduled instant, whether or not earlier ones have
answered), and latency is measured from that instant, so a slow answer cannot hide the
ones queued behind it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from app.settings import Settings
from app.tools.common import (
    api_headers,
    freeze_heap,
    get_json,
    launch,
    produce,
    stop_processes,
    tidemail_command,
    wait_until,
)
from app.tools.generator import EventGenerator, user_id


@dataclass(frozen=True, slots=True)
class LoadResult:
    name: str
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def load_test(name: str, urls: list[str], rate: int, seconds: float, headers: dict[str, str]) -> LoadResult:
    freeze_heap()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def one(url: str, scheduled: float) -> None:
            nonlocal errors
            try:
                async with http.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - scheduled) * 1000)

        started = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(urls[n % len(urls)], scheduled)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return LoadResult(
        name,
        len(latencies),
        errors,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
        latencies[-1],
    )


async def run_api_bench(env: dict[str, str], base: str, rate: int, seconds: float) -> list[LoadResult]:
    """Load a deployment described by `env` (its worker serving at `base`) with 5,000 users."""
    users = 5_000
    workdir = Path(env["TIDEMAIL_DATA_DIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    processes = [
        launch(tidemail_command(command), workdir / f"{command}.log", env) for command in ("worker", "trainer")
    ]
    # Sent to /health too, so the baseline pays what the measured requests pay but the token check.
    headers = api_headers(Settings.from_env(env))
    try:
        await _load_users(env, base, users, headers)
        rng = random.Random(3)
        sample = [user_id(rng.randrange(users)) for _ in range(2_000)]
        results = [await load_test("GET /health (baseline)", [base + "/health"], rate, seconds, headers)]
        for name, path in (("recommendations?k=10", "/recommendations?k=10"), ("predictions", "/predictions")):
            urls = [f"{base}/users/{user}{path}" for user in sample]
            # The first requests for a user compute; the rest are served from Redis.
            results.append(await load_test(f"GET /users/{{id}}/{name}", urls, rate, seconds, headers))
        return results
    finally:
        stop_processes(processes)


async def _load_users(env: dict[str, str], base: str, users: int, headers: dict[str, str]) -> None:
    """50,000 events from `users` users, through the worker, and an item model trained on them."""
    async with aiohttp.ClientSession(headers=headers) as http:
        await wait_until(lambda: get_json(http, base + "/stats"), lambda s: True, 120, "api worker")
        messages = itertools.islice(EventGenerator(users=users, seed=5).messages(), 50_000)
        await produce(env["TIDEMAIL_KAFKA_BOOTSTRAP"], env["TIDEMAIL_EVENTS_TOPIC"], messages)
        await wait_until(lambda: get_json(http, base + "/stats"), lambda s: s["processed"] >= 50_000, 300, "api events")
        await wait_until(
            lambda: get_json(http, base + "/models"),
            lambda m: m["recommendations"]["items"] > 0,
            120,
            "item model snapshot",
        )


def report_api(results: list[LoadResult], rate: int) -> str:
    baseline = results[0]
    lines = [
        "",
        f"{'API at ' + str(rate) + ' requests/s':<40}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'p99 / baseline':>16}",
    ]
    lines += [
        f"{r.name:<40}{r.requests:>10,}{r.errors:>8}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.max_ms:>9.1f}"
        f"{r.p99_ms / baseline.p99_ms:>15.1f}x"
        for r in results
    ]
    worst = max(r.p99_ms for r in results[1:])
    lines.append(f"prediction API p99 {worst:.2f} ms at {rate}/s (target < 10 ms)")
    return "\n".join(lines)
