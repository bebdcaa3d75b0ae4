"""`tidemail demo`: a worker, a trainer, the deliverer and a local SMTP sink, a realistic event stream,
and a live line of what comes out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from app.faust_app import ensure_deployment_topics
from app.settings import Settings
from app.tools.common import api_headers, launch, stop_processes, tidemail_command
from app.tools.generator import publish
from streams.core.withdrawal import is_withdrawal

LOGS = Path(".cache/logs")


async def run_demo(settings: Settings, users: int, rate: float, time_lapse: float, world: str = "shipped") -> None:
    # SIGTERM (`kill`, a container or CI stopping it) ends the demo the way Ctrl-C does,
    # through the `finally` below that stops every process it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, os.kill, os.getpid(), signal.SIGINT)
    # The worker's RocksDB is a cache of its changelog topic: started afresh it is rebuilt
    # from the broker, so a reset broker (or another checkout's) cannot contradict it.
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    await ensure_deployment_topics(settings)
    worker = _start("worker")
    trainer = _start("trainer")
    # Emails go to a local SMTP sink that keeps each as an .eml file.
    sink, deliverer = _start("smtp-sink"), _start("deliver")
    print(f"worker, trainer, deliverer and SMTP sink started (logs in {LOGS}); waiting for the worker ...", flush=True)
    base = f"http://{settings.web_host}:{settings.web_port}"
    generator: asyncio.Task[int] | None = None
    try:
        # The admin token: the time-lapse moves the worker's clock.
        async with aiohttp.ClientSession(headers=api_headers(settings, admin=True)) as http:
            await _wait_ready(http, base, worker)
            print(f"metrics: {base}/metrics   stop: Ctrl-C", flush=True)
            auth = "".join(f" -H '{name}: {value}'" for name, value in api_headers(settings).items())
            print(f"a user: curl{auth} {base}/users/u000001", flush=True)
            print(f"emails: {settings.smtp_sink_dir}/*.eml", flush=True)
            generator = asyncio.create_task(
                publish(settings, users=users, limit=None, rate=rate, seed=int(time.time()), world=world)
            )
            clocks = [base, f"http://{settings.web_host}:{settings.deliverer_metrics_port}"]
            lapse = asyncio.create_task(_time_lapse(http, clocks, time_lapse)) if time_lapse != 1 else None
            try:
                await _watch(http, base, settings, worker)
            finally:
                if lapse is not None:
                    lapse.cancel()
    finally:
        if generator is not None:
            generator.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await generator
        stop_processes((deliverer, sink, trainer, worker), grace_s=8)
        print("\nworker, trainer, deliverer and SMTP sink stopped", flush=True)


async def _time_lapse(http: aiohttp.ClientSession, clocks: list[str], speed: float) -> None:
    """Move the worker's and the deliverer's clocks together, `speed` times faster than real
    time, so waits of hours (a quiet cart, the welcome series) play out in minutes."""
    print(f"time-lapse: {speed:g}x (an hour of flow time per {60 / speed:g} minutes)", flush=True)
    step_s = 1.0
    while True:
        await asyncio.sleep(step_s)
        for base in clocks:
            with contextlib.suppress(aiohttp.ClientError):
                await http.post(f"{base}/admin/clock", json={"advance_ms": int((speed - 1) * step_s * 1000)})


def _start(command: str) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    return launch(tidemail_command(command), LOGS / f"{command}.log", append=True)


async def _wait_ready(http: aiohttp.ClientSession, base: str, worker: subprocess.Popen[bytes]) -> None:
    while True:
        if worker.poll() is not None:
            raise SystemExit(f"worker exited with {worker.returncode}; see .cache/logs/worker.log")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/health") as response:
                if response.status == 200 and (await response.json())["owned_partitions"]:
                    return
        await asyncio.sleep(0.5)


async def _watch(http: aiohttp.ClientSession, base: str, settings: Settings, worker: subprocess.Popen[bytes]) -> None:
    """Print one refreshing line: events processed, dead letters, segment changes, jobs, the latest subject."""
    consumer = AIOKafkaConsumer(
        settings.jobs_topic,
        settings.dead_letter_topic,
        settings.segment_changes_topic,
        settings.deliveries_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        isolation_level="read_committed",
    )
    await consumer.start()
    jobs: Counter[str] = Counter()
    dead = changes = sent = 0
    last_job = ""
    previous, previous_at = 0, time.monotonic()
    try:
        while worker.poll() is None:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                if tp.topic == settings.jobs_topic:
                    emitted = [orjson.loads(r.value) for r in records if not is_withdrawal(r.headers)]
                    jobs.update(job["flow"] for job in emitted)
                    if emitted:
                        last_job = f'"{emitted[-1]["subject"]}" -> {emitted[-1]["to"]}'
                elif tp.topic == settings.segment_changes_topic:
                    changes += len(records)
                elif tp.topic == settings.deliveries_topic:
                    sent += sum(orjson.loads(r.value)["outcome"] == "sent" for r in records)
                else:
                    dead += len(records)
            async with http.get(f"{base}/stats") as response:
                processed = (await response.json())["processed"]
            async with http.get(f"{base}/models") as response:
                quality = (await response.json())["recommendations"]["quality"]
            now = time.monotonic()
            rate = (processed - previous) / (now - previous_at)
            previous, previous_at = processed, now
            counts = (
                f"events {processed:>9,} ({rate:>6,.0f}/s) | dead letters {dead:>5,} | "
                f"segment changes {changes:>7,} | jobs: welcome {jobs['welcome']:,}, "
                f"cart {jobs['cart_abandonment']:,}, win-back {jobs['winback']:,} | emails sent {sent:>6,}"
            )
            hits = _hit_rates(quality)
            line = f"{counts} | {hits} | last: {last_job}"
            print("\r" + line[:240].ljust(240), end="", flush=True)
    finally:
        await consumer.stop()


def _hit_rates(quality: dict[str, Any]) -> str:
    """Hit-rate@10 on clicks and purchases, and on products new to the user, per recommender."""
    clicked, fresh = quality["hit_rate_at_10"], quality["new_to_user"]["hit_rate_at_10"]
    return (
        f"hit@10 model {clicked['model'] or 0:.1%} vs popular {clicked['popular'] or 0:.1%}; "
        f"new to user: model {fresh['model'] or 0:.1%}, popular {fresh['popular'] or 0:.1%}, "
        f"item-to-item {fresh['item_to_item'] or 0:.1%}"
    )
