"""`tidemail bench --flows`: flow timers and governance on a real worker and broker.

1. Timer lag: 100,000 carts go quiet with their reminders due over 100 seconds, all
   pending in the timer index at once; each reminder job's lag is `created_at - send_at`
   (with quiet hours off, `send_at` is the instant the wait ended).
2. Burst: 20,000 reminders fall due at the same instant (the worker's clock is moved
   past them); jobs/s from timer through governance, rendering and publishing.
3. The governance decision alone, in process.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.settings import Settings
from app.tools.common import (
    api_headers,
    delete_topics,
    deployment_env,
    flows_without_segment_triggers,
    get_json,
    launch,
    produce,
    stop_processes,
    tidemail_command,
    wait_until,
)
from streams.core.flow_engine import JobRequest
from streams.core.governance import GovernancePolicy, QuietHours, decide
from streams.core.state import UserState
from streams.delivery.messages import parse_time
from streams.kafka.topics import ensure_topics

HOUR_MS = 3_600_000
PORT = 6175
# Time for the worker to take in every cart before the first reminder falls due.
LEAD_S = 90


@dataclass(frozen=True, slots=True)
class FlowBenchResult:
    pending: int
    spread_s: float
    fired: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    ingest_s: float
    burst: int
    burst_s: float
    decide_us: float


async def run_flow_bench(pending: int = 100_000, spread_s: float = 100, burst: int = 20_000) -> FlowBenchResult:
    run_id = time.strftime("%Y%m%d%H%M%S")
    env = _flows_env(run_id)
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("TIDEMAIL_")})
    await ensure_topics(settings.kafka_bootstrap, settings.partitions, 1, settings.hot_path_topics)
    workdir = Path(env["TIDEMAIL_DATA_DIR"])
    worker = launch(tidemail_command("worker"), workdir.with_suffix(".log"), env)
    base = f"http://127.0.0.1:{PORT}"
    try:
        async with aiohttp.ClientSession(headers=api_headers(settings, admin=True)) as http:
            await wait_until(lambda: get_json(http, base + "/stats"), lambda s: True, 120, "worker")
            jobs = JobWatcher(settings.kafka_bootstrap, settings.jobs_topic, settings.partitions)
            await jobs.start()
            try:
                lags, ingest_s = await _timer_lag(http, base, settings, jobs, pending, spread_s)
                burst_s = await _burst(http, base, settings, jobs, pending, burst)
            finally:
                await jobs.stop()
    finally:
        stop_processes([worker])
        await delete_topics(settings.kafka_bootstrap, f"bench-{run_id}")
    shutil.rmtree(workdir.parent, ignore_errors=True)  # kept after a failure, for its log
    lags.sort()
    return FlowBenchResult(
        pending,
        spread_s,
        len(lags),
        statistics.median(lags),
        lags[int(len(lags) * 0.99) - 1],
        lags[-1],
        ingest_s,
        burst,
        burst_s,
        measure_decision_us(),
    )


def _flows_env(run_id: str) -> dict[str, str]:
    """A deployment of its own with clock control, no quiet hours, and no segments."""
    env = deployment_env(run_id, "flows", Settings.from_env().partitions, PORT)
    directory = Path(env["TIDEMAIL_DATA_DIR"]).parent
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "segments-0.yaml").write_text("segments: []\n")
    env.update(
        TIDEMAIL_ALLOW_CLOCK_CONTROL="true",
        TIDEMAIL_QUIET_HOURS="",
        # Flows only: no segment flips competing with the reminders for the timer.
        TIDEMAIL_SEGMENTS_FILE=str(directory / "segments-0.yaml"),
        TIDEMAIL_FLOWS_FILE=str(flows_without_segment_triggers(directory)),
    )
    return env


async def _timer_lag(
    http: aiohttp.ClientSession, base: str, settings: Settings, jobs: JobWatcher, pending: int, spread_s: float
) -> tuple[list[float], float]:
    """Each reminder's lag behind its due instant, and how long the worker took to take in the carts."""
    now = int(time.time() * 1000)
    # Each cart goes quiet an hour before its reminder: due from LEAD_S on, spread evenly.
    first_due = now + LEAD_S * 1000
    carts = [first_due - HOUR_MS + int(i * spread_s * 1000 / pending) for i in range(pending)]
    print(f"producing {pending:,} users with carts ...", flush=True)
    started = time.perf_counter()
    await produce(settings.kafka_bootstrap, settings.events_topic, _carts("p", carts))
    await wait_until(lambda: get_json(http, base + "/stats"), lambda s: s["processed"] >= 2 * pending, 600, "ingest")
    ingest_s = time.perf_counter() - started
    print(f"  in the worker after {ingest_s:.1f}s; reminders fall due from {LEAD_S}s", flush=True)
    lags = await jobs.collect(pending, timeout=LEAD_S + spread_s + 120)
    print(f"  {len(lags):,} reminders out", flush=True)
    return lags, ingest_s


async def _burst(
    http: aiohttp.ClientSession, base: str, settings: Settings, jobs: JobWatcher, pending: int, burst: int
) -> float:
    """Seconds from moving the clock past `burst` reminders to the last of their jobs."""
    print(f"burst: {burst:,} reminders due at one instant ...", flush=True)
    now = int(time.time() * 1000)
    await produce(settings.kafka_bootstrap, settings.events_topic, _carts("b", [now] * burst))
    await wait_until(
        lambda: get_json(http, base + "/stats"),
        lambda s: s["processed"] >= 2 * (pending + burst),
        600,
        "burst ingest",
    )
    started = time.perf_counter()
    async with http.post(base + "/admin/clock", json={"advance_ms": HOUR_MS + 1_000}):
        pass
    await jobs.collect(burst, timeout=600)
    return time.perf_counter() - started


class JobWatcher:
    """Reads the jobs topic as it grows and measures each job's lag behind its `send_at`."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_end(*self._tps)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def collect(self, count: int, timeout: float) -> list[float]:
        lags: list[float] = []
        deadline = time.monotonic() + timeout
        while len(lags) < count and time.monotonic() < deadline:
            for records in (await self._consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    job = orjson.loads(record.value)
                    lags.append(parse_time(job["created_at"], "created_at") - parse_time(job["send_at"], "send_at"))
        if len(lags) < count:
            raise TimeoutError(f"only {len(lags):,} of {count:,} jobs in {timeout:.0f}s")
        return lags


def _carts(prefix: str, quiet_since: list[int]) -> Iterator[tuple[bytes, bytes]]:
    for n, ts in enumerate(quiet_since):
        user = f"{prefix}{n:07d}"
        traits = {"email": f"{user}@example.com", "first_name": "Sam"}
        profile = {"event_id": f"pu-{user}", "user_id": user, "type": "profile_update", "timestamp": ts - 1}
        yield user.encode(), orjson.dumps({**profile, "properties": {"traits": traits}})
        item = {"sku": f"SKU-{n % 500:04d}", "name": "Trail shoe", "category": "outdoor", "price": 89.0}
        cart = {"cart_id": f"cart-{user}", "item": item}
        add = {"event_id": f"ca-{user}", "user_id": user, "type": "cart_add", "timestamp": ts, "properties": cart}
        yield user.encode(), orjson.dumps(add)


def measure_decision_us(rounds: int = 100_000) -> float:
    """One governance decision for a subscribed user with a time zone and two recent sends."""
    policy = GovernancePolicy(2, 7, QuietHours(21, 8))
    state = UserState("u1", traits={"email": "u1@example.com", "timezone": "Europe/Berlin"})
    state.marketing_sends = [1_795_800_000_000, 1_795_830_000_000]
    request = JobRequest("cart_abandonment", 3, "cart_reminder", "c1", "e1", 1_795_852_800_000)
    started = time.perf_counter()
    for _ in range(rounds):
        decide(state, request, policy, _no_best_hour)
    return (time.perf_counter() - started) / rounds * 1e6


def _no_best_hour() -> int | None:
    return None


def report_flows(result: FlowBenchResult) -> str:
    r = result
    return "\n".join(
        [
            "",
            f"flow timers: {r.pending:,} pending cart reminders, due over {r.spread_s:.0f} s "
            f"(all {r.pending:,} in the timer index while the first fire; ingest took {r.ingest_s:.0f} s)",
            f"  fired {r.fired:,}; lag behind due: p50 {r.lag_p50_ms:,.0f} ms, p99 {r.lag_p99_ms:,.0f} ms, "
            f"max {r.lag_max_ms:,.0f} ms (target: within 1 s)",
            f"  burst: {r.burst:,} reminders due at one instant out in {r.burst_s:.1f} s = "
            f"{r.burst / r.burst_s:,.0f} jobs/s through timer, governance, rendering and publishing",
            f"  governance decision alone: {r.decide_us:.1f} us per job",
        ]
    )
