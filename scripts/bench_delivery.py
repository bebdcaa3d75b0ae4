"""Deliverer throughput against the local broker, Redis and an in-process SMTP server.

    .venv/bin/python scripts/bench_delivery.py [--jobs 5000] [--concurrency 8 32] [--repeat 2]
    .venv/bin/python scripts/bench_delivery.py --rebuild 200000

Each run is a deployment of its own (topics, group, Redis namespace): JOBS jobs due now, plus
one due in an hour at the head of every partition, are produced first; then `tidemail
deliver` starts and the clock runs from its first assigned partition to the last email
received (emails/s), with the deliverer's CPU time per email from /proc. Then it is stopped
and started again: every job is read again (the committed offsets stay at the jobs due
later) and the restart is timed until all of them are recognised as finished.

With `--rebuild N`: N jobs' claim and outcome records are produced to a deliveries topic of
its own, and reading them back into a ledger (what a deliverer does when given partitions)
is timed in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from aiosmtpd.smtp import SMTP, Envelope, Session

# This checkout's code, for the bench and the deliverer it starts (a copy in a second
# worktree measures that worktree's deliverer).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import Settings  # noqa: E402
from app.tools.common import delete_topics, stop_processes  # noqa: E402
from streams.core.jobs import format_time  # noqa: E402
from streams.kafka.topics import ensure_topics  # noqa: E402

PARTITIONS = 8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Counting:
    """Accepts every message and counts it."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += 1
        return "250 2.0.0 queued"


def env_for(run: str, smtp_port: int, metrics_port: int, concurrency: int) -> dict[str, str]:
    return {
        **os.environ,
        "TIDEMAIL_APP_ID": run,
        "TIDEMAIL_JOBS_TOPIC": f"{run}.email-jobs",
        "TIDEMAIL_DELIVERIES_TOPIC": f"{run}.deliveries",
        "TIDEMAIL_EVENTS_TOPIC": f"{run}.events",
        "TIDEMAIL_DEAD_LETTER_TOPIC": f"{run}.dead-letter",
        # The deliverer creates (or checks) the worker's topics at start: its own, not the shared ones.
        "TIDEMAIL_SEGMENT_CHANGES_TOPIC": f"{run}.segment-changes",
        "TIDEMAIL_INTERACTIONS_TOPIC": f"{run}.interactions",
        "TIDEMAIL_ITEM_MODEL_TOPIC": f"{run}.item-model",
        "TIDEMAIL_CATALOG_TOPIC": f"{run}.catalog",
        "TIDEMAIL_ERASURES_TOPIC": f"{run}.erasures",
        "TIDEMAIL_PARTITIONS": str(PARTITIONS),
        "TIDEMAIL_SMTP_PORT": str(smtp_port),
        "TIDEMAIL_DELIVERER_METRICS_PORT": str(metrics_port),
        "TIDEMAIL_DELIVERY_CONCURRENCY": str(concurrency),
        "TIDEMAIL_LOG_LEVEL": "warn",
    }


def job(n: int, send_at_ms: int, partition: int | None = None) -> bytes:
    user = f"u{n:06d}" if partition is None else f"later{partition}"
    body = "Hello there. " * 200
    return orjson.dumps(
        {
            "job_id": str(uuid.uuid4()),
            "user_id": user,
            "to": f"{user}@example.com",
            "flow": "welcome",
            "step": 1,
            "subject": "Welcome to the shop",
            "html": f"<html><body><p>{body}</p></body></html>",
            "text": body,
            "unsubscribe_url": "https://shop.example.com/unsubscribe?token=t0k",
            "send_at": format_time(send_at_ms),
        }
    )


async def produce(settings: Settings, jobs: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        now = int(time.time() * 1000)
        for partition in range(PARTITIONS):
            value = job(0, now + 3_600_000, partition)
            await producer.send(settings.jobs_topic, value, key=f"later{partition}".encode(), partition=partition)
        for n in range(jobs):
            await producer.send(settings.jobs_topic, job(n, now), key=f"u{n:06d}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def deliverer_topics(settings: Settings) -> None:
    """The topics the deliverer reads and writes (the worker's are not needed)."""
    names = [settings.jobs_topic, settings.deliveries_topic, settings.events_topic, settings.dead_letter_topic]
    await ensure_topics(settings.kafka_bootstrap, PARTITIONS, 1, names)


async def get(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def deliver(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "deliver"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        await asyncio.sleep(0.02)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def duplicates(url: str) -> float:
    for line in (await get(url + "/metrics")).splitlines():
        if line.startswith('tidemail_deliveries_total{outcome="duplicate"}'):
            return float(line.split()[1])
    return 0.0


async def run_once(jobs: int, concurrency: int, smtp_port: int, handler: Counting) -> tuple[float, float, float]:
    run = f"bench-deliver-{uuid.uuid4().hex[:8]}"
    metrics_port = free_port()
    env = env_for(run, smtp_port, metrics_port, concurrency)
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("TIDEMAIL_")})
    await deliverer_topics(settings)
    await produce(settings, jobs)
    url, log = f"http://127.0.0.1:{metrics_port}", ROOT / ".cache" / f"{run}.log"
    handler.received = 0
    try:
        deliverer = deliver(env, log)

        async def assigned() -> bool:
            try:
                return bool(orjson.loads(await get(url + "/health"))["assigned_partitions"])
            except aiohttp.ClientError:
                return False

        await wait_until(assigned, 60)
        started, cpu_before = time.monotonic(), cpu_s(deliverer.pid)

        async def all_received() -> bool:
            return handler.received >= jobs

        await wait_until(all_received, 600)
        elapsed, cpu = time.monotonic() - started, cpu_s(deliverer.pid) - cpu_before
        stop_processes([deliverer])
        restarted = time.monotonic()
        deliverer = deliver(env, log)

        async def all_recognised() -> bool:
            try:
                return await duplicates(url) >= jobs
            except aiohttp.ClientError:
                return False

        await wait_until(all_recognised, 600)
        restart = time.monotonic() - restarted
        stop_processes([deliverer])
        assert handler.received == jobs, f"{handler.received} emails for {jobs} jobs"
        return jobs / elapsed, 1000 * cpu / jobs, restart
    finally:
        await delete_topics(settings.kafka_bootstrap, run)
        client = redis.from_url(settings.redis_url)
        keys = [key async for key in client.scan_iter(f"tidemail:{run}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def rebuild(jobs: int) -> None:
    from aiokafka import AIOKafkaConsumer

    from streams.delivery.ledger import Ledger
    from streams.delivery.rebuild import LedgerReader

    run = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
    env = env_for(run, 0, 0, 1)
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("TIDEMAIL_")})
    await deliverer_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=50)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        base = {"user_id": "u", "flow": "welcome", "step": 1, "attempts": 1, "at": format_time(0), "reason": None}
        for n in range(jobs):
            for outcome, code in (("claimed", None), ("sent", 250)):
                record = {**base, "job_id": str(uuid.uuid4()), "outcome": outcome, "smtp_code": code}
                await producer.send(settings.deliveries_topic, orjson.dumps(record), partition=n % PARTITIONS)
        await producer.flush()
        ledger = Ledger()
        started = time.monotonic()
        await LedgerReader(settings.delivery, consumer, ledger).rebuild(dict.fromkeys(range(PARTITIONS), 0))
        elapsed = time.monotonic() - started
        print(f"rebuilt {2 * jobs:,} records ({len(ledger):,} jobs) in {elapsed:.1f} s: {2 * jobs / elapsed:,.0f}/s")
    finally:
        await consumer.stop()
        await producer.stop()
        await delete_topics(settings.kafka_bootstrap, run)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rebuild", type=int, default=0, help="time reading back N jobs' records instead")
    args = parser.parse_args()
    if args.rebuild:
        await rebuild(args.rebuild)
        return
    handler = Counting()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="bench-smtp"), "127.0.0.1", 0
    )
    smtp_port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(args.repeat):
            for concurrency in args.concurrency:
                rate, cpu_ms, restart = await run_once(args.jobs, concurrency, smtp_port, handler)
                print(
                    f"{args.jobs} jobs, {concurrency} senders: {rate:,.0f} emails/s, "
                    f"{cpu_ms:.2f} ms deliverer CPU per email; restart recognised all in {restart:.1f} s",
                    flush=True,
                )
    finally:
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
