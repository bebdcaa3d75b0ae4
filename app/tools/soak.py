"""`tidemail soak`: a deployment of its own at a million users. One worker drains the first
part of the stream, a second joins and the pair drains the rest, each part sent before it is
timed (the producer does not share the cores with the workers it measures), and the report gives each one's rate, what
a user costs at rest, memory, restarts from local state and from the changelog, how
late flow timers fire when a wave of them comes due, and how fast either worker answers
for any user."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.faust_app import ensure_deployment_topics
from app.tools.common import get_json
from app.tools.fleet import Deployment, Fleet, Member
from app.tools.soak_measure import (
    API_SETTLE_S,
    Wave,
    measure_any_worker,
    measure_state,
    measure_timers,
    restart_from_changelog,
    restart_from_local_state,
)
from app.tools.soak_produce import produce_partitioned
from app.tools.soak_report import SoakReport, Throughput
from app.tools.soak_world import SoakWorld, steady_quiet_hours

# The stream is sent in two parts, each before it is measured: one worker drains the first
# (this share) alone; a second joins, and the pair drains the rest, timed until this share of
# the rest is left, so neither runs dry inside the window.
SINGLE_SHARE = 0.35
PAIR_TAIL_SHARE = 0.05
# The deployment's processes beside the workers, whose share of the two cores the workers do
# not get: the deliverer's grows with the emails due, so with the hour in users' zones.
BESIDE_WORKERS = ("deliverer", "trainer", "smtp-sink")


@dataclass(frozen=True, slots=True)
class SoakOptions:
    users: int
    events: int
    seed: int
    rate: float | None
    partitions: int
    keep: bool = False


def progress_bars() -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )


async def run_soak(options: SoakOptions) -> SoakReport:
    run_id = time.strftime("%Y%m%d%H%M%S")
    deployment = Deployment.create(
        f"soak-{run_id}",
        Path(".cache/soak") / run_id,
        options.partitions,
        {"TIDEMAIL_QUIET_HOURS": steady_quiet_hours(int(time.time() * 1000))},
    )
    await ensure_deployment_topics(deployment.settings)
    fleet = Fleet(deployment)
    print(f"soak deployment {deployment.name}: logs and data in {deployment.root}", flush=True)
    try:
        with progress_bars() as bars:
            return await _soak(fleet, options, bars)
    finally:
        fleet.stop_all()
        if not options.keep:
            await deployment.remove()


async def _soak(fleet: Fleet, options: SoakOptions, bars: Progress) -> SoakReport:
    for member in (fleet.start_sink(), fleet.start_deliverer(), fleet.start_trainer()):
        await fleet.wait_ready(member, timeout=120)
    world = SoakWorld(options.users, options.seed)
    stream = world.messages(options.events, lambda: int(time.time() * 1000))
    alone = int(options.events * SINGLE_SHARE)
    first = await _produce(fleet, world, itertools.islice(stream, alone), alone, options.rate, bars)
    single, beside_single = await _drain_alone(fleet, alone, bars)
    bars.console.log(f"1 worker: {single.rate:,.0f} events/s, {single.per_cpu_second:,.0f} per CPU-second")
    await _join_second_worker(fleet, bars)
    second = await _produce(fleet, world, stream, options.events - alone, options.rate, bars)
    pair, beside_pair = await _drain_pair(fleet, second.count, bars)
    bars.console.log(" + ".join(f"{t.rate:,.0f} events/s ({t.per_cpu_second:,.0f} per CPU-second)" for t in pair))
    await _drain_rest(fleet, bars)
    timers = await measure_timers(fleet, [first, second], bars)
    bars.console.log(f"timer lag p50 {timers.p50_s} s, p99 {timers.p99_s} s over {timers.users:,} users")
    # The wave of reminders is still being fired: the workers share the cores with it.
    api_wave = await measure_any_worker(fleet, world, bars, "while a wave of reminders is fired")
    rss = {name: fleet.rss_bytes(name) for name in ("worker-1", "worker-2")}
    fleet.stop("worker-1", "worker-2")
    state = await measure_state(fleet, bars)
    local_s = await restart_from_local_state(fleet, bars)
    await asyncio.sleep(API_SETTLE_S)
    api_settled = await measure_any_worker(fleet, world, bars, f"settled ({API_SETTLE_S} s after a restart)")
    changelog_s = await restart_from_changelog(fleet, bars)
    return SoakReport(
        users=world.users_seen,
        events=first.count + second.count,
        produce_rate=(first.count + second.count) / (first.seconds + second.seconds),
        single=single,
        pair=pair,
        beside_single=beside_single,
        beside_pair=beside_pair,
        rocksdb=state.rocksdb,
        changelog=state.changelog,
        changelog_records=state.changelog_records,
        rss=rss,
        memory=state.memory,
        ready_local_s=local_s,
        ready_changelog_s=changelog_s,
        timer_lag_p50_s=timers.p50_s,
        timer_lag_p99_s=timers.p99_s,
        timer_users=timers.users,
        jobs=timers.jobs,
        sent=timers.sent,
        api=(api_settled, api_wave),
    )


async def _produce(
    fleet: Fleet,
    world: SoakWorld,
    messages: Iterable[tuple[bytes, bytes]],
    count: int,
    rate: float | None,
    bars: Progress,
) -> Wave:
    settings = fleet.deployment.settings
    task = bars.add_task("producing events", total=count, note="")
    started_ms, started = int(time.time() * 1000), time.monotonic()

    def advance(sent: int) -> None:
        bars.update(task, advance=sent, note=f"{world.users_seen:,} users seen")

    sent = await produce_partitioned(
        settings.kafka_bootstrap, settings.events_topic, settings.partitions, messages, advance, rate
    )
    seconds = time.monotonic() - started
    bars.update(task, note=f"{world.users_seen:,} users seen, {sent / seconds:,.0f}/s")
    return Wave(started_ms, seconds, sent)


async def processed(http: aiohttp.ClientSession, worker: Member) -> int:
    stats = await get_json(http, worker.url + "/stats")
    return int(stats["processed"]) if stats else 0


async def _drain_alone(fleet: Fleet, events: int, bars: Progress) -> tuple[Throughput, dict[str, float]]:
    """Worker 1 over the events sent so far, from its first processed one to the last; and the
    cores the deployment's other processes used meanwhile."""
    task = bars.add_task("1 worker", total=events, note="starting")
    worker = fleet.start_worker(1)
    async with aiohttp.ClientSession(headers=fleet.deployment.admin_headers) as http:
        first = 0
        while first == 0:
            _alive(worker)
            first = await processed(http, worker)
            await asyncio.sleep(0.2)
        started, cpu, done = time.monotonic(), fleet.cpu_seconds(worker.name), first
        beside = fleet.cpu_used(BESIDE_WORKERS)
        while done < events and await _backlog(fleet) > 0:
            _alive(worker)
            await asyncio.sleep(0.5)
            done = await processed(http, worker) or done
            rate = (done - first) / (time.monotonic() - started)
            bars.update(task, completed=min(done, events), note=f"{rate:,.0f}/s")
    seconds = time.monotonic() - started
    return Throughput(done - first, seconds, fleet.cpu_seconds(worker.name) - cpu), fleet.cores_since(beside, seconds)


async def _join_second_worker(fleet: Fleet, bars: Progress) -> None:
    """Worker 2 joins; both settle (own partitions, recovery done) with nothing left to process."""
    task = bars.add_task("worker 2 joining", total=None, note="rebalancing")
    workers = (fleet.worker(1), fleet.start_worker(2))
    async with aiohttp.ClientSession(headers=fleet.deployment.admin_headers) as http:
        while not all([await _settled(http, w) for w in workers]) or await _backlog(fleet) > 0:
            for worker in workers:
                _alive(worker)
            await asyncio.sleep(0.5)
    bars.update(task, total=1, completed=1, note="both own partitions")


async def _drain_pair(
    fleet: Fleet, events: int, bars: Progress
) -> tuple[tuple[Throughput, Throughput], dict[str, float]]:
    """Each worker from the end of sending the rest of the stream until what is left of it is
    under `PAIR_TAIL_SHARE` (so that neither runs dry inside the window); and the cores the
    deployment's other processes used meanwhile."""
    workers = (fleet.worker(1), fleet.worker(2))
    tail = int(events * PAIR_TAIL_SHARE)
    async with aiohttp.ClientSession(headers=fleet.deployment.admin_headers) as http:
        left = await _backlog(fleet)
        task = bars.add_task("2 workers", total=left, note="")
        start = [await processed(http, w) for w in workers]
        cpu = [fleet.cpu_seconds(w.name) for w in workers]
        beside = fleet.cpu_used(BESIDE_WORKERS)
        started = time.monotonic()
        counts = start
        while left > tail:
            await asyncio.sleep(0.5)
            for worker in workers:
                _alive(worker)
            counts = [max(await processed(http, w), c) for w, c in zip(workers, counts, strict=True)]
            rates = [(c - s) / (time.monotonic() - started) for c, s in zip(counts, start, strict=True)]
            left = await _backlog(fleet)
            bars.update(task, completed=sum(counts) - sum(start), note=" + ".join(f"{r:,.0f}/s" for r in rates))
    seconds = time.monotonic() - started
    first, second = (
        Throughput(c - s, seconds, fleet.cpu_seconds(w.name) - u)
        for w, c, s, u in zip(workers, counts, start, cpu, strict=True)
    )
    return (first, second), fleet.cores_since(beside, seconds)


async def _backlog(fleet: Fleet) -> int:
    settings = fleet.deployment.settings
    return await backlog(settings.kafka_bootstrap, settings.events_topic, settings.partitions, settings.app_id)


async def _settled(http: aiohttp.ClientSession, worker: Member) -> bool:
    """The worker owns partitions and no rebalance or recovery is under way (it may still lag)."""
    try:
        async with http.get(worker.url + "/ready", timeout=aiohttp.ClientTimeout(total=5)) as response:
            body = await response.json()
    except (TimeoutError, aiohttp.ClientError):
        return False
    return bool(body["owned_partitions"]) and not any("recovery" in reason for reason in body["reasons"])


async def _drain_rest(fleet: Fleet, bars: Progress) -> None:
    """Until the hot path's committed offsets reach the end of every events partition."""
    settings = fleet.deployment.settings
    task = bars.add_task("draining the rest", total=None, note="")
    while (
        left := await backlog(settings.kafka_bootstrap, settings.events_topic, settings.partitions, settings.app_id)
    ) > 0:
        for name in ("worker-1", "worker-2"):
            _alive(fleet.members[name])
        bars.update(task, note=f"{left:,} events left")
        await asyncio.sleep(1)
    bars.update(task, total=1, completed=1, note="done")


async def backlog(bootstrap: str, topic: str, partitions: int, app_id: str) -> int:
    """Events not yet committed by the hot path's group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{app_id}-hot-path")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        left = 0
        for tp in tps:
            left += ends[tp] - ((await consumer.committed(tp)) or 0)
        return left
    finally:
        await consumer.stop()


def _alive(member: Member) -> None:
    if not member.running:
        raise RuntimeError(f"{member.name} exited; log:\n{member.log_tail()}")
