"""The soak's measurements once the stream is processed: how late a wave of due flow timers
fires, how the two workers answer for each other's users, what the state takes at rest, and
how long workers take to be ready again."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp
from rich.progress import Progress

from app.tools.any_worker_bench import AnyWorkerResult, Layout, request_load, segments_agree, shared_out
from app.tools.common import metrics_text
from app.tools.fleet import Fleet
from app.tools.soak_report import (
    MIB,
    RocksMemory,
    SizeSummary,
    counter_total,
    histogram_buckets,
    histogram_quantile,
    merge_buckets,
)
from app.tools.soak_state import changelog_sizes, partition_dbs, rocksdb_sizes
from app.tools.soak_world import SoakWorld, scrambled

# The shipped cart flow waits this long after a cart's last change before reminding.
CART_QUIET_MS = 3_600_000
# The clocks are moved to this long before the first cart of the stream goes quiet.
LEAD_MS = 10_000
WORKERS = ("worker-1", "worker-2")
# GET /users/{id} over the pair: 10,000 requests at 500/s take 20 s.
API_REQUESTS = 10_000
API_RATE = 500
API_SEED = 7
# After a restart from local state, before the settled measure: the first seconds of a worker
# are its consumers' and producers' start, whose pauses are not an answer's cost.
API_SETTLE_S = 20


@dataclass(frozen=True, slots=True)
class Wave:
    """A part of the stream as sent: from when (epoch ms), for how long, how many events."""

    started_ms: int
    seconds: float
    count: int


@dataclass(frozen=True, slots=True)
class Timers:
    p50_s: float | None
    p99_s: float | None
    users: int
    jobs: int
    sent: int


@dataclass(frozen=True, slots=True)
class State:
    rocksdb: SizeSummary
    changelog: SizeSummary
    changelog_records: int
    memory: RocksMemory


async def measure_timers(fleet: Fleet, waves: list[Wave], bars: Progress) -> Timers:
    """For each part of the stream in turn, move the workers' and the deliverer's clocks to
    just before its first carts go quiet: their reminders then come due as fast as it made them."""
    members = [fleet.members[name] for name in (*WORKERS, "deliverer")]
    window_s = sum(LEAD_MS / 1000 + wave.seconds + 10 for wave in waves)
    task = bars.add_task("timers coming due", total=round(window_s), note="")
    async with aiohttp.ClientSession(headers=fleet.deployment.admin_headers) as http:
        moved_ms = 0
        for wave in waves:
            # Never back: a clock only moves forward (a wave whose carts are already due fires at once).
            advance_ms = max(0, wave.started_ms + CART_QUIET_MS - LEAD_MS - int(time.time() * 1000) - moved_ms)
            for member in members:
                async with http.post(member.url + "/admin/clock", json={"advance_ms": advance_ms}) as response:
                    response.raise_for_status()
            moved_ms += advance_ms
            bars.update(task, note=f"clocks +{moved_ms / 60_000:.0f} min")
            started = time.monotonic()
            while time.monotonic() - started < LEAD_MS / 1000 + wave.seconds + 10:
                await asyncio.sleep(1)
                bars.update(task, advance=1)
        texts = [await metrics_text(http, fleet.members[name].url) for name in WORKERS]
        delivered = await metrics_text(http, fleet.members["deliverer"].url)
    lateness = merge_buckets(*(histogram_buckets(text, "tidemail_timer_lateness_seconds") for text in texts))
    return Timers(
        p50_s=histogram_quantile(lateness, 0.5),
        p99_s=histogram_quantile(lateness, 0.99),
        users=int(sum(counter_total(text, "tidemail_timer_users_total") for text in texts)),
        jobs=int(sum(counter_total(text, "tidemail_jobs_emitted_total") for text in texts)),
        sent=int(counter_total(delivered, "tidemail_deliveries_total", 'outcome="sent"')),
    )


async def measure_state(fleet: Fleet, bars: Progress) -> State:
    """Bytes per user in the stopped workers' RocksDB files and in the changelog topic."""
    settings = fleet.deployment.settings
    data_dirs = [d for name in WORKERS if (d := fleet.members[name].data_dir) is not None]
    dbs = partition_dbs(data_dirs)
    task = bars.add_task("reading RocksDB", total=None, note=f"{len(dbs)} partitions")
    rocks = await asyncio.to_thread(rocksdb_sizes, dbs, lambda n: bars.update(task, advance=n))
    bars.update(task, total=rocks.users, completed=rocks.users)
    task = bars.add_task("reading the changelog", total=None, note="")
    changelog = await changelog_sizes(
        settings.kafka_bootstrap,
        f"{settings.app_id}-users-changelog",
        settings.partitions,
        lambda n: bars.update(task, advance=n),
    )
    bars.update(task, total=changelog.records, completed=changelog.records)
    memory = RocksMemory(
        block_cache_bytes=settings.rocksdb_block_cache_mb * MIB,
        memtable_budget_bytes=settings.rocksdb_memtables_mb * MIB,
        databases_per_worker=tuple(len(partition_dbs([d])) for d in data_dirs),
    )
    return State(
        rocksdb=SizeSummary.of(rocks.per_user, rocks.total_bytes),
        changelog=SizeSummary.of(changelog.per_user, changelog.total_bytes),
        changelog_records=changelog.records,
        memory=memory,
    )


async def restart_from_local_state(fleet: Fleet, bars: Progress) -> float:
    """Seconds until both stopped workers are ready again on their local state; they go on running."""
    return await _restart(fleet, bars, "restart from local state")


async def restart_from_changelog(fleet: Fleet, bars: Progress) -> float:
    """Seconds until both workers are ready again with their local state deleted; then they stop."""
    fleet.stop(*WORKERS)
    for n in (1, 2):
        fleet.delete_local_state(n)
    rebuilt = await _restart(fleet, bars, "restart from the changelog")
    fleet.stop(*WORKERS)
    return rebuilt


async def _restart(fleet: Fleet, bars: Progress, what: str) -> float:
    task = bars.add_task(what, total=None, note="")
    started = time.monotonic()
    workers = [fleet.start_worker(n) for n in (1, 2)]
    await asyncio.gather(*(fleet.wait_ready(worker, timeout=900) for worker in workers))
    seconds = time.monotonic() - started
    bars.update(task, total=1, completed=1, note=f"ready in {seconds:.1f} s")
    return seconds


async def measure_any_worker(fleet: Fleet, world: SoakWorld, bars: Progress, during: str) -> AnyWorkerResult:
    """GET /users/{id} for users of the stream drawn at random, sent to the two workers in turn:
    about half are about the other worker's users and are forwarded to it."""
    task = bars.add_task(f"any worker answers, {during}", total=None, note=f"{API_REQUESTS:,} at {API_RATE}/s")
    deployment = fleet.deployment
    workers = [fleet.worker(1), fleet.worker(2)]
    rng = random.Random(API_SEED)
    users = [world.user_id(scrambled(rng.randrange(world.users_seen), world.users)) for _ in range(API_REQUESTS)]
    async with aiohttp.ClientSession(headers=deployment.admin_headers) as http:
        owned = await shared_out(http, workers, deployment.settings.partitions)
        agree = await segments_agree(http, workers)
    layout = Layout(owned, deployment.settings.partitions)
    before = fleet.cpu_used(name for name, member in fleet.members.items() if member.running)
    started, client_before = time.monotonic(), time.process_time()
    samples = await request_load(deployment.admin_headers, workers, layout, users, API_REQUESTS, API_RATE)
    seconds = time.monotonic() - started
    cores = fleet.cores_since(before, seconds) | {"client": (time.process_time() - client_before) / seconds}
    bars.update(task, total=1, completed=1, note=f"{sum(not s.ok for s in samples)} errors")
    return AnyWorkerResult(API_REQUESTS, API_RATE, samples, agree, during, cores)
