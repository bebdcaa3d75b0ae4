"""Any worker answering for any user, measured: two workers of a fresh deployment share 8
partitions and hold 2,000 generated users; GET /users/{id} requests for random users go to
the two in turn, open-loop (each at its scheduled instant, whether or not earlier ones have
answered). A request is local when the worker asked owns the user and forwarded otherwise
(about half of each); latency runs from the scheduled instant to the answer's last byte.
The local requests are the baseline of the forwarded ones, in the same run.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from app.api.forwarding import ANSWERED_BY
from app.faust_app import ensure_deployment_topics
from app.tools.common import freeze_heap, get_json, produce, verdict, wait_until
from app.tools.fleet import Deployment, Fleet, Member
from app.tools.generator import EventGenerator
from streams.core.partitioning import partition_of

PARTITIONS = 8
USERS = 2_000
EVENTS = 10_000
# Requests per second: 10,000 take 20 s.
RATE = 500
FORWARDED_P99_TARGET_MS = 10.0


@dataclass(frozen=True, slots=True)
class Sample:
    forwarded: bool
    # `ok`, the status of another answer, `misrouted` (answered by the wrong worker) or the client's error.
    outcome: str
    ms: float

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True, slots=True)
class AnyWorkerResult:
    requests: int
    rate: int
    samples: list[Sample]
    segments_agree: bool
    # What the workers were doing meanwhile, when it matters to the figures.
    during: str = ""
    # Cores each process used while the requests were sent (the client is the sender).
    cores: dict[str, float] = field(default_factory=dict)


async def run_any_worker_bench(requests: int, rate: int = RATE) -> AnyWorkerResult:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    deployment = Deployment.create(f"bench-any-{stamp}", Path(f".cache/bench-any-worker/{stamp}"), PARTITIONS)
    fleet = Fleet(deployment)
    try:
        await ensure_deployment_topics(deployment.settings)
        workers = [fleet.start_worker(1), fleet.start_worker(2)]
        for worker in workers:
            await fleet.wait_ready(worker)
        messages = list(itertools.islice(EventGenerator(users=USERS, seed=5, broken_share=0.0).messages(), EVENTS))
        await produce(deployment.settings.kafka_bootstrap, deployment.settings.events_topic, messages)
        users = sorted({key.decode() for key, _ in messages})
        async with aiohttp.ClientSession(headers=deployment.admin_headers) as http:
            owned = await shared_out(http, workers, PARTITIONS)
            await _caught_up(http, workers, len(messages))
            agree = await segments_agree(http, workers)
        layout = Layout(owned, PARTITIONS)
        samples = await request_load(deployment.admin_headers, workers, layout, users, requests, rate)
        return AnyWorkerResult(requests, rate, samples, agree)
    finally:
        fleet.stop_all()
        await deployment.remove()


async def shared_out(http: aiohttp.ClientSession, workers: list[Member], partitions: int) -> list[set[int]]:
    """Each worker's partitions, once the two own all of them between them."""

    async def owned() -> list[set[int]] | None:
        healths = [await get_json(http, w.url + "/health") for w in workers]
        return None if None in healths else [set(h["owned_partitions"]) for h in healths if h is not None]

    def shared(o: list[set[int]]) -> bool:
        return all(o) and not o[0] & o[1] and o[0] | o[1] == set(range(partitions))

    return await wait_until(owned, shared, 120, "two workers sharing the partitions")


async def _caught_up(http: aiohttp.ClientSession, workers: list[Member], events: int) -> None:
    async def processed() -> int:
        stats = [await get_json(http, w.url + "/stats") for w in workers]
        return sum(s["processed"] for s in stats if s is not None)

    await wait_until(processed, lambda n: n >= events, 300, f"{events} events processed")


async def segments_agree(http: aiohttp.ClientSession, workers: list[Member]) -> bool:
    """Whether both workers give the same, complete fleet sizes."""
    answers = [await get_json(http, w.url + "/segments") for w in workers]
    sizes = [{s["name"]: s["size"] for s in a["segments"]} if a and a["complete"] else None for a in answers]
    return sizes[0] is not None and sizes[0] == sizes[1]


@dataclass(frozen=True, slots=True)
class Layout:
    """Which of the two workers owns which of the deployment's partitions."""

    owned: list[set[int]]
    partitions: int

    def forwarded(self, user: str, asked: int) -> bool:
        return partition_of(user.encode(), self.partitions) not in self.owned[asked]


async def request_load(
    headers: dict[str, str], workers: list[Member], layout: Layout, users: list[str], requests: int, rate: int
) -> list[Sample]:
    """`requests` GET /users/{id} for users drawn from `users`, sent to the two workers in turn at
    `rate` per second, open-loop."""
    freeze_heap()
    rng = random.Random(7)
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def one(n: int, scheduled: float) -> None:
            user, asked = users[rng.randrange(len(users))], n % 2
            forwarded = layout.forwarded(user, asked)
            try:
                async with http.get(f"{workers[asked].url}/users/{user}") as response:
                    await response.read()
                    outcome = "ok" if response.status == 200 else str(response.status)
                    if outcome == "ok" and (ANSWERED_BY in response.headers) != forwarded:
                        outcome = "misrouted"
            except aiohttp.ClientError as e:
                outcome = type(e).__name__
            samples.append(Sample(forwarded, outcome, (time.perf_counter() - scheduled) * 1000))

        started = time.perf_counter()
        tasks = []
        for n in range(requests):
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, scheduled)))
        await asyncio.gather(*tasks)
    return samples


def at_share(ordered: list[float], share: float) -> float:
    """The value `share` of the way through `ordered` (sorted, not empty)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def report_any_worker(result: AnyWorkerResult) -> str:
    lines = [
        "",
        f"GET /users/{{id}} over two workers, {result.requests:,} requests at {result.rate}/s"
        + (f", {result.during}" if result.during else ""),
        f"{'':<12}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    p99: dict[bool, float] = {}
    for forwarded, name in ((False, "local"), (True, "forwarded")):
        chosen = [s for s in result.samples if s.forwarded == forwarded]
        times = sorted(s.ms for s in chosen)
        if not times:
            continue
        errors = sum(not s.ok for s in chosen)
        p50, p99[forwarded] = at_share(times, 0.5), at_share(times, 0.99)
        lines.append(f"{name:<12}{len(times):>10,}{errors:>8}{p50:>9.2f}{p99[forwarded]:>9.2f}{times[-1]:>9.1f}")
    if result.cores:
        lines.append(
            "cores used meanwhile: " + ", ".join(f"{name} {n:.2f}" for name, n in sorted(result.cores.items()))
        )
    errors = sum(not s.ok for s in result.samples)
    kinds = Counter(s.outcome for s in result.samples if not s.ok)
    if kinds:
        lines.append("errors: " + ", ".join(f"{kind} x{n}" for kind, n in kinds.most_common()))
    forwarded_p99 = p99.get(True, math.nan)
    ratio = forwarded_p99 / p99[False] if len(p99) == 2 else math.nan
    lines.append(
        f"errors {errors} of {len(result.samples):,} (target 0: {verdict(errors == 0)}); "
        f"forwarded p99 {forwarded_p99:.2f} ms ({ratio:.1f}x local; target < {FORWARDED_P99_TARGET_MS:.0f} ms: "
        f"{verdict(forwarded_p99 < FORWARDED_P99_TARGET_MS)}); "
        f"/segments fleet sizes equal at both workers: {result.segments_agree}"
    )
    return "\n".join(lines)
