"""GET /users/{id} while a worker catches up on a backlog: a deployment of its own gets
`--events` generated events, then one worker starts on them and is asked at `--rate` per
second, open-loop, until it has processed them all. Reports the latency of the answers
(200 or 404) to the requests sent before it caught up, and how long catching up took.

    .venv/bin/python scripts/bench_api_catchup.py [--events 600000] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.faust_app import ensure_deployment_topics  # noqa: E402
from app.tools.any_worker_bench import at_share  # noqa: E402
from app.tools.common import freeze_heap, get_json, produce  # noqa: E402
from app.tools.fleet import Deployment, Fleet, Member  # noqa: E402
from app.tools.generator import EventGenerator, user_id  # noqa: E402

PARTITIONS = 8
USERS = 50_000


async def run(events: int, rate: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    deployment = Deployment.create(f"bench-catchup-{stamp}", ROOT / f".cache/bench-api-catchup/{stamp}", PARTITIONS)
    fleet = Fleet(deployment)
    try:
        await ensure_deployment_topics(deployment.settings)
        messages = itertools.islice(EventGenerator(users=USERS, seed=5, broken_share=0.0).messages(), events)
        await produce(deployment.settings.kafka_bootstrap, deployment.settings.events_topic, messages)
        freeze_heap()
        worker = fleet.start_worker(1)
        async with aiohttp.ClientSession(headers=deployment.admin_headers) as http:
            started = time.perf_counter()
            samples, caught_up = await _ask_until_caught_up(http, worker, events, rate)
        during = sorted(ms for scheduled, ms in samples if scheduled < caught_up)
        return (
            f"{events:,} events caught up in {caught_up - started:.1f} s from the worker's start; "
            f"GET /users/{{id}} at {rate}/s meanwhile: {len(during):,} answered, "
            f"p50 {at_share(during, 0.5):.1f} ms, p99 {at_share(during, 0.99):.1f} ms, max {during[-1]:.1f} ms"
        )
    finally:
        fleet.stop_all()
        await deployment.remove()


async def _ask_until_caught_up(
    http: aiohttp.ClientSession, worker: Member, events: int, rate: int
) -> tuple[list[tuple[float, float]], float]:
    """(scheduled instant, ms to the answer) of each answered request, and when the worker
    had processed `events`; requests answered 503 (not ready yet) or not at all are left out."""
    samples: list[tuple[float, float]] = []

    async def ask(n: int, scheduled: float) -> None:
        try:
            async with http.get(f"{worker.url}/users/{user_id(n % USERS)}") as response:
                await response.read()
                if response.status in (200, 404):
                    samples.append((scheduled, (time.perf_counter() - scheduled) * 1000))
        except aiohttp.ClientError:
            pass

    async def caught_up() -> float:
        while (stats := await get_json(http, worker.url + "/stats")) is None or stats["processed"] < events:
            await asyncio.sleep(0.2)
        return time.perf_counter()

    watch = asyncio.create_task(caught_up())
    started, asked = time.perf_counter(), []
    for n in itertools.count():
        if watch.done():
            break
        scheduled = started + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        asked.append(asyncio.create_task(ask(n, scheduled)))
    await asyncio.gather(*asked)
    return samples, watch.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--rate", type=int, default=100, help="requests per second, sent open-loop")
    args = parser.parse_args()
    print(asyncio.run(run(args.events, args.rate)))


if __name__ == "__main__":
    main()
