"""`tidemail chaos`: the shop's world run on a broker and Redis of its own while a seeded
schedule kills workers, the deliverer, the trainer, the broker and Redis with -9 and pauses a
worker past its session timeout; then `chaos_verify` compares everything with one pass of
the pure core. Modelled on Kafka Streams' EOS system tests (a kill loop, then a verifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from app.faust_app import ensure_deployment_topics
from app.settings import Settings
from app.tools.chaos_faults import FaultCounts, inject, schedule
from app.tools.chaos_fleet import Fleet
from app.tools.chaos_services import Services
from app.tools.chaos_verify import Verdict, verify
from app.tools.chaos_world import held_quiet_hours, world_messages
from app.tools.common import get_json, keep_pace
from streams.consumer_lag import LAG_INTERVAL_S

# Past every quiet hour and best hour the world can set: each job is due once the run moves
# the deliverer's clock this far at the end.
FINAL_CLOCK_ADVANCE_MS = 26 * 3_600_000


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    """The world and the faults of one run."""

    users: int = 1_000_000
    events: int = 2_000_000
    # Events per second produced: the faults are spread over the time it takes.
    rate: float = 2_500
    seed: int = 7
    workers: int = 2
    partitions: int = 8
    session_timeout_s: float = 6.0
    # How long a paused worker stays stopped: past the session timeout, so the group moves
    # its partitions; longer than the takeover (rebalance and recovery), so the new owner
    # has processed them again before the paused one resumes its batch.
    pause_s: float = 15.0
    erase_share: float = 0.2
    # Every user's profile published once by the shop's CRM, so every user of the world has a state.
    crm_sync: bool = True
    faults: FaultCounts = field(default_factory=FaultCounts)

    @property
    def producing_s(self) -> float:
        return self.events / self.rate


def deployment_env(plan: ChaosPlan, services: Services, run_id: str, quiet_hours: str) -> dict[str, str]:
    name = f"chaos-{run_id}"
    topics = {
        "EVENTS": "events",
        "JOBS": "email-jobs",
        "DEAD_LETTER": "dead-letter",
        "SEGMENT_CHANGES": "segment-changes",
        "INTERACTIONS": "interactions",
        "ITEM_MODEL": "item-model",
        "CATALOG": "catalog",
        "DELIVERIES": "deliveries",
        "ERASURES": "erasures",
    }
    return {
        **{f"TIDEMAIL_{setting}_TOPIC": f"{name}.{topic}" for setting, topic in topics.items()},
        "TIDEMAIL_APP_ID": name,
        "TIDEMAIL_KAFKA_BOOTSTRAP": services.bootstrap,
        "TIDEMAIL_REDIS_URL": services.redis_url,
        "TIDEMAIL_PARTITIONS": str(plan.partitions),
        "TIDEMAIL_KAFKA_SESSION_TIMEOUT_S": str(plan.session_timeout_s),
        "TIDEMAIL_QUIET_HOURS": quiet_hours,
        # The world's events are stamped as they are produced; none is too old to trigger.
        "TIDEMAIL_MAX_TRIGGER_AGE": "",
        "TIDEMAIL_ALLOW_CLOCK_CONTROL": "true",
        "TIDEMAIL_TRAINER_METRICS_PORT": "0",
        "TIDEMAIL_RECO_SNAPSHOT_INTERVAL_S": "2",
        "TIDEMAIL_DELIVERY_RETRY_BASE_MS": "200",
        "TIDEMAIL_LOG_LEVEL": "info",
        "TIDEMAIL_API_TOKENS": secrets.token_urlsafe(24),
        "TIDEMAIL_ADMIN_TOKENS": secrets.token_urlsafe(24),
    }


def say(started: float, line: str, at: float | None = None) -> None:
    """Print `line` stamped with the seconds since `started` (or since it, at monotonic `at`)."""
    print(f"[{(at or time.monotonic()) - started:7.1f}s] {line}", flush=True)


async def produce_world(plan: ChaosPlan, settings: Settings) -> int:
    """Send the world's events at `plan.rate`, riding out a broker restart (a send that fails
    is sent again: a duplicate in the topic is what the verifier replays too)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=10, enable_idempotence=True, request_timeout_ms=120_000
    )
    await producer.start()
    started, sent = time.monotonic(), 0
    try:
        for key, value in world_messages(plan.users, plan.events, plan.seed, plan.erase_share, plan.crm_sync):
            while True:
                try:
                    await producer.send(settings.events_topic, value, key=key)
                    break
                except KafkaError:
                    await asyncio.sleep(1)
            sent += 1
            if sent % 50 == 0:
                await keep_pace(sent, plan.rate, started)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def supervise(fleet: Fleet, started: float) -> None:
    """Restart whatever ended without being killed by the schedule, saying so."""
    while True:
        await asyncio.sleep(1)
        for name in fleet.reap_unexpected_exits():
            say(started, f"{name} exited on its own (status {fleet.exits[-1][1]}); restarted")
            fleet.start(name)


async def group_caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """Whether `group` has committed the end of every partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp: (await consumer.committed(tp)) or 0 for tp in tps}
        return all(committed[tp] >= ends[tp] for tp in tps)
    finally:
        await consumer.stop()


async def wait_caught_up(settings: Settings, group: str, topic: str, timeout: float, extra: object = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaError):
            if await group_caught_up(settings.kafka_bootstrap, group, topic, settings.partitions):
                return
        await asyncio.sleep(1)
    raise TimeoutError(f"{group} did not reach the end of {topic} within {timeout:.0f}s")


async def deliverer_idle(fleet: Fleet, settings: Settings, timeout: float) -> None:
    """Until the deliverer has committed every job and holds none."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            await wait_caught_up(
                settings, f"{settings.app_id}-deliver", settings.jobs_topic, deadline - time.monotonic()
            )
            health = await get_json(http, fleet.url("deliverer") + "/health")
            if health is not None and health["pending"] == 0:
                return
            await asyncio.sleep(1)
    raise TimeoutError(f"the deliverer still held jobs after {timeout:.0f}s")


async def deliverer_read_all(fleet: Fleet, settings: Settings, timeout: float) -> None:
    """Until the deliverer's lag on every partition of the jobs topic reads 0 twice, one lag
    measurement apart: the withdrawals are read before the held emails fall due."""
    deadline = time.monotonic() + timeout
    zero_in_a_row = 0
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline and zero_in_a_row < 2:
            lags = await jobs_lag(http, fleet.url("deliverer"), settings.jobs_topic)
            zero_in_a_row = zero_in_a_row + 1 if len(lags) == settings.partitions and not any(lags) else 0
            await asyncio.sleep(LAG_INTERVAL_S + 0.5)
    if zero_in_a_row < 2:
        raise TimeoutError(f"the deliverer had not read the whole jobs topic after {timeout:.0f}s")


async def jobs_lag(http: aiohttp.ClientSession, url: str, topic: str) -> list[float]:
    """The deliverer's `tidemail_consumer_lag_records` of each partition of `topic` it reports."""
    with contextlib.suppress(aiohttp.ClientError):
        async with http.get(url + "/metrics") as answer:
            if answer.status == 200:
                prefix = "tidemail_consumer_lag_records{"
                return [
                    float(line.rsplit(" ", 1)[1])
                    for line in (await answer.text()).splitlines()
                    if line.startswith(prefix) and f'topic="{topic}"' in line
                ]
    return []


async def advance_deliverer_clock(fleet: Fleet, millis: int) -> int:
    async with aiohttp.ClientSession() as http:
        for _ in range(60):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(fleet.url("deliverer") + "/admin/clock", json={"advance_ms": millis}) as answer:
                    if answer.status == 200:
                        now: int = (await answer.json())["now_ms"]
                        return now
            await asyncio.sleep(1)
    raise TimeoutError("the deliverer's clock could not be moved")


async def start_deployment(plan: ChaosPlan, root: Path, started: float) -> tuple[Services, Fleet, Settings]:
    services = Services(root / "services")
    await services.start()
    quiet = held_quiet_hours(int(time.time() * 1000))
    env = deployment_env(plan, services, secrets.token_hex(4), quiet)
    settings = Settings.from_env(env)
    await ensure_deployment_topics(settings)
    fleet = Fleet(root, env={**os_environ(), **env}, workers=plan.workers)
    fleet.start_all()
    try:
        await workers_ready(fleet, env)
    except TimeoutError:
        fleet.stop_all()
        services.stop()
        raise
    say(
        started,
        f"broker :{services.kafka_port}, Redis :{services.redis_port}, {plan.workers} workers, trainer, "
        f"deliverer, SMTP sink started in {root}; quiet hours {quiet} hold Asia/Tokyo's emails to the end",
    )
    return services, fleet, settings


async def workers_ready(fleet: Fleet, env: dict[str, str], timeout: float = 300) -> None:
    """Until every worker owns partitions, so that faults strike a group at work."""
    headers = {"Authorization": f"Bearer {env['TIDEMAIL_ADMIN_TOKENS']}"}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers=headers) as http:
        for n in range(fleet.workers):
            while time.monotonic() < deadline:
                health = await get_json(http, fleet.url(fleet.worker(n)) + "/health")
                if health is not None and health["owned_partitions"]:
                    break
                await asyncio.sleep(0.5)
            else:
                raise TimeoutError(f"{fleet.worker(n)} owned no partition within {timeout:.0f}s")


def os_environ() -> dict[str, str]:
    """This process's environment less Tidemail's settings: the run sets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDEMAIL_")}


async def run_faults(plan: ChaosPlan, fleet: Fleet, services: Services, started: float) -> None:
    # Faults strike while events flow: after the first tenth, before the last tenth.
    window = (plan.producing_s * 0.1, plan.producing_s * 0.9)
    faults = schedule(plan.faults, window, plan.seed, pause_s=plan.pause_s)
    for n, fault in enumerate(faults, 1):
        await asyncio.sleep(max(0.0, fault.at_s - (time.monotonic() - started)))
        struck = time.monotonic()
        done = await inject(fault, fleet, services)
        say(started, f"fault {n}/{len(faults)} {fault.kind}: {done}", at=struck)


async def settle(plan: ChaosPlan, fleet: Fleet, settings: Settings, started: float) -> int:
    """Wait until every event is processed and every due job delivered; return the deliverer's
    final clock (every job due before it must have been handled)."""
    timeout = 600 + plan.events / 2_000
    await wait_caught_up(settings, f"{settings.app_id}-hot-path", settings.events_topic, timeout)
    say(started, "workers caught up with the events topic")
    await deliverer_read_all(fleet, settings, timeout)
    say(started, "deliverer read every job and withdrawal")
    now_ms = await advance_deliverer_clock(fleet, FINAL_CLOCK_ADVANCE_MS)
    say(started, "deliverer's clock moved 26 h ahead: the held emails fall due")
    await deliverer_idle(fleet, settings, timeout)
    say(started, "deliverer finished every job")
    return now_ms


async def run_chaos(plan: ChaosPlan, root: Path, keep: bool = False) -> Verdict:
    started = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    services, fleet, settings = await start_deployment(plan, root, started)
    # The schedule counts from the first event.
    started = time.monotonic()
    watcher = asyncio.create_task(supervise(fleet, started))
    try:
        producing = asyncio.create_task(produce_world(plan, settings))
        await run_faults(plan, fleet, services, started)
        say(started, f"{await producing:,} events produced")
        due_before_ms = await settle(plan, fleet, settings, started)
        watcher.cancel()
        fleet.stop_all()
        verdict = await verify(settings, fleet.sink_dir, due_before_ms)
        for line in verdict.lines():
            say(started, line)
        return verdict
    finally:
        watcher.cancel()
        fleet.stop_all()
        services.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
