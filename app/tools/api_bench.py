"""Latency of the prediction API under a steady load, against `/health` at the same rate.

A worker and a trainer run on a fresh deployment holding 5,000 generated users; requests
are sent open-loop (each at its scheduled instant, whether or not earlier ones have
answered), and latency is measured from that instant, so a slow answer cannot hide the
ones queued behind it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from app.tools.generator import EventGenerator


@dataclass(frozen=True, slots=True)
class LoadResult:
    name: str
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def freeze_heap() -> None:
    """Leave every object this process holds now out of its garbage collections.

    The benchmark process times requests from their scheduled instants and feeds the
    workers it measures, so its own pauses read as theirs. Its default collector walks
    the whole heap often: over one full `make bench` it made 102 full collections of
    0.05-0.39 s, and one of 0.08 s during the predictions load put that p99 at 43 ms."""
    gc.collect()
    gc.freeze()


async def load_test(name: str, urls: list[str], rate: int, seconds: float) -> LoadResult:
    freeze_heap()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:

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
    from app.tools.bench import _produce, _stats, _wait_until  # the throughput bench's helpers

    users = 5_000
    workdir = Path(env["TIDEMAIL_DATA_DIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    processes = [_spawn(command, env, workdir / f"{command}.log") for command in ("worker", "trainer")]
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_until(lambda: _stats(http, base + "/stats"), lambda s: s is not None, 120, "api worker")
            generator = EventGenerator(users=users, seed=5)
            await _produce(env["TIDEMAIL_KAFKA_BOOTSTRAP"], env["TIDEMAIL_EVENTS_TOPIC"], generator, 50_000, None)
            await _wait_until(
                lambda: _stats(http, base + "/stats"), lambda s: s["processed"] >= 50_000, 300, "api events"
            )
            await _wait_until(
                lambda: _json(http, base + "/models"),
                lambda m: m is not None and m["recommendations"]["items"] > 0,
                120,
                "item model snapshot",
            )
        rng = random.Random(3)
        sample = [f"u{rng.randrange(users):06d}" for _ in range(2_000)]
        results = [await load_test("GET /health (baseline)", [base + "/health"], rate, seconds)]
        for name, path in (("recommendations?k=10", "/recommendations?k=10"), ("predictions", "/predictions")):
            urls = [f"{base}/users/{user}{path}" for user in sample]
            # The first requests for a user compute; the rest are served from Redis.
            results.append(await load_test(f"GET /users/{{id}}/{name}", urls, rate, seconds))
        return results
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


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


def _spawn(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", command], env=env, stdout=log, stderr=log, start_new_session=True
        )


async def _json(http: aiohttp.ClientSession, url: str) -> dict[str, object] | None:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return await response.json() if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError):
        return None
