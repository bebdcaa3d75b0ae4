"""What the benchmarks and the demo share: deployments of their own, worker processes, producing
events, and polling a worker's HTTP API until it reports what they wait for."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from aiokafka import AIOKafkaProducer

from app.settings import Settings

T = TypeVar("T")


def freeze_heap() -> None:
    """Leave every object this process holds now out of its garbage collections.

    The benchmark process times requests from their scheduled instants and feeds the
    workers it measures, so its own pauses read as theirs. Its default collector walks
    the whole heap often: over one full `make bench` it made 102 full collections of
    0.05-0.39 s, and one of 0.08 s during the predictions load put that p99 at 43 ms."""
    gc.collect()
    gc.freeze()


def deployment_env(run_id: str, slug: str, partitions: int, web_port: int) -> dict[str, str]:
    """A worker's environment with topics, group and data of its own."""
    name = f"bench-{run_id}-{slug}"
    return {
        **os.environ,
        "TIDEMAIL_APP_ID": name,
        "TIDEMAIL_EVENTS_TOPIC": f"{name}.events",
        "TIDEMAIL_SEGMENT_CHANGES_TOPIC": f"{name}.segment-changes",
        "TIDEMAIL_INTERACTIONS_TOPIC": f"{name}.interactions",
        "TIDEMAIL_ITEM_MODEL_TOPIC": f"{name}.item-model",
        "TIDEMAIL_CATALOG_TOPIC": f"{name}.catalog",
        "TIDEMAIL_JOBS_TOPIC": f"bench-{run_id}.email-jobs",
        "TIDEMAIL_DEAD_LETTER_TOPIC": f"bench-{run_id}.dead-letter",
        # Checked against TIDEMAIL_PARTITIONS at start-up like the rest: a shared one may differ,
        # and one a benchmark left with its partition count would stop `make demo` from starting.
        "TIDEMAIL_DELIVERIES_TOPIC": f"bench-{run_id}.deliveries",
        "TIDEMAIL_ERASURES_TOPIC": f"bench-{run_id}.erasures",
        "TIDEMAIL_PARTITIONS": str(partitions),
        "TIDEMAIL_DATA_DIR": str(Path(".cache/bench") / run_id / slug),
        "TIDEMAIL_WEB_PORT": str(web_port),
        "TIDEMAIL_TRAINER_METRICS_PORT": "0",
        "TIDEMAIL_KAFKA_BOOTSTRAP": Settings.from_env().kafka_bootstrap,
        "TIDEMAIL_LOG_LEVEL": "warn",
        "TIDEMAIL_API_TOKENS": secrets.token_urlsafe(24),
        "TIDEMAIL_ADMIN_TOKENS": secrets.token_urlsafe(24),
    }


def api_headers(settings: Settings, admin: bool = False) -> dict[str, str]:
    """The `Authorization` header that calls the worker API of `settings`' deployment with its first
    API token (an admin one with `admin`, or when it has no API token); none when it has neither."""
    api, admins = settings.api_bearer_tokens, settings.admin_bearer_tokens
    tokens = (admins or api) if admin else (api or admins)
    return {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}


def flows_without_segment_triggers(directory: Path) -> Path:
    """The shipped flows less those started by a segment, for segment sets that lack it."""
    shipped = yaml.safe_load(Settings().flows_file.read_text())
    kept = [flow for flow in shipped["flows"] if "segment" not in flow["trigger"]]
    path = directory / "flows-event-triggered.yaml"
    path.write_text(yaml.safe_dump({"flows": kept}))
    return path


async def delete_topics(bootstrap: str, prefix: str) -> None:
    # Hundreds of leftover partitions slow every later start of the local broker.
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [topic for topic in await admin.list_topics() if topic.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def tidemail_command(command: str) -> list[str]:
    """`tidemail <command>` run by this interpreter."""
    return [sys.executable, "-m", "app.cli", command]


def launch(
    argv: list[str], log_path: Path, env: Mapping[str, str] | None = None, append: bool = False
) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own (so stopping it stops its children), logging to `log_path`."""
    with log_path.open("ab" if append else "wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], grace_s: float = 30) -> None:
    """SIGTERM every one, then kill (with its session) each one still running after `grace_s` in all."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes]], rate: float | None = None
) -> None:
    """Send (key, value) messages, as fast as possible or paced at `rate` per second.

    Paced messages are sent without lingering: their Kafka timestamps start latency
    measures, which would otherwise include the wait in this producer."""
    linger_ms = 20 if rate is None else 0
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, max_batch_size=1024 * 1024)
    await producer.start()
    started = time.monotonic()
    try:
        for n, (key, value) in enumerate(messages):
            await producer.send(topic, value, key=key)
            if rate is not None and n % 20 == 0:
                await keep_pace(n, rate, started)
        await producer.flush()
    finally:
        await producer.stop()


async def keep_pace(sent: int, rate: float, started: float) -> None:
    """Wait until `sent` messages are due at `rate` per second from `started` (`time.monotonic()`)."""
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        await asyncio.sleep(ahead)


async def metrics_text(http: aiohttp.ClientSession, url: str) -> str:
    """A process's Prometheus exposition (`<url>/metrics`)."""
    async with http.get(url + "/metrics") as response:
        response.raise_for_status()
        return await response.text()


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    """The JSON body of a 200 answer; None for any other status, a timeout or no answer."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = await response.json()
            return body
    except (TimeoutError, aiohttp.ClientError):
        return None


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], ready: Callable[[T], bool], timeout: float, what: str
) -> T:
    """Poll `probe` until its answer is `ready`; raise naming `what` if it is not in `timeout` s."""
    last = await poll_until(probe, ready, timeout)
    if last is None or not ready(last):
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
    return last


async def poll_until(probe: Callable[[], Awaitable[T | None]], ready: Callable[[T], bool], timeout: float) -> T | None:
    """Poll `probe` until its answer is `ready` or `timeout` s have passed; return its last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last is not None and ready(last):
            return last
        await asyncio.sleep(0.05)
    return last


def verdict(ok: bool) -> str:
    """How a report line names a figure against its target."""
    return "met" if ok else "MISSED"
