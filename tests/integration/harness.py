"""Running real Tidemail workers against the real broker, and reading topics back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from app.faust_app import build_processor, ensure_deployment_topics
from app.settings import Settings
from app.tools.fleet import delete_deployment as delete_deployment  # re-exported for the tests
from streams.core.batch import BatchResult, InputRecord
from streams.core.clock import Clock
from streams.core.state import UserState
from streams.core.state_codec import decode_state, encode_state
from streams.core.withdrawal import is_withdrawal
from streams.kafka.store import is_user_key
from tests.factories import encoded, event_doc

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class WorkerHarness:
    """One isolated Tidemail deployment: its own topics, app id, data dir and port."""

    tmp: Path
    env_overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.port = free_port()
        self.env = {
            **os.environ,
            "TIDEMAIL_APP_ID": f"test-{run}",
            "TIDEMAIL_EVENTS_TOPIC": f"test-{run}.events",
            "TIDEMAIL_JOBS_TOPIC": f"test-{run}.email-jobs",
            "TIDEMAIL_DEAD_LETTER_TOPIC": f"test-{run}.dead-letter",
            "TIDEMAIL_SEGMENT_CHANGES_TOPIC": f"test-{run}.segment-changes",
            "TIDEMAIL_INTERACTIONS_TOPIC": f"test-{run}.interactions",
            "TIDEMAIL_ITEM_MODEL_TOPIC": f"test-{run}.item-model",
            "TIDEMAIL_CATALOG_TOPIC": f"test-{run}.catalog",
            "TIDEMAIL_DELIVERIES_TOPIC": f"test-{run}.deliveries",
            "TIDEMAIL_ERASURES_TOPIC": f"test-{run}.erasures",
            "TIDEMAIL_RECO_SNAPSHOT_INTERVAL_S": "1",
            "TIDEMAIL_TRAINER_METRICS_PORT": "0",
            "TIDEMAIL_ALLOW_CLOCK_CONTROL": "true",
            "TIDEMAIL_PARTITIONS": str(PARTITIONS),
            "TIDEMAIL_DATA_DIR": str(self.tmp / "worker"),
            "TIDEMAIL_WEB_PORT": str(self.port),
            "TIDEMAIL_KAFKA_SESSION_TIMEOUT_S": "6",
            "TIDEMAIL_LOG_LEVEL": "warn",
            "TIDEMAIL_API_TOKENS": f"api-token-{run}",
            "TIDEMAIL_ADMIN_TOKENS": f"admin-token-{run}",
            # Test events carry fixed timestamps (`BASE_TS`) that grow older with the calendar;
            # the tests of stale triggers set their own limit.
            "TIDEMAIL_MAX_TRIGGER_AGE": "",
            # The links in emails lead to this worker.
            "TIDEMAIL_UNSUBSCRIBE_BASE_URL": f"http://127.0.0.1:{self.port}/unsubscribe",
            **self.env_overrides,
        }
        self.settings = Settings.from_env({k: v for k, v in self.env.items() if k.startswith("TIDEMAIL_")})
        # Tests read and move everything: the admin token opens every route.
        self.headers = {"Authorization": f"Bearer {self.settings.admin_bearer_tokens[0]}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.trainer: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "worker.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sibling(self, tmp: Path) -> WorkerHarness:
        """Another worker of the same deployment (app id, topics), with its own data directory and port."""
        tmp.mkdir(parents=True, exist_ok=True)
        own = ("TIDEMAIL_WEB_PORT", "TIDEMAIL_DATA_DIR")
        return WorkerHarness(tmp, {k: v for k, v in self.env.items() if k.startswith("TIDEMAIL_") and k not in own})

    async def start(self) -> None:
        self.process = self.spawn("worker", self.log_path)
        await self.wait_for(lambda health: bool(health["owned_partitions"]), "/health", timeout=90)

    async def start_with_trainer(self) -> None:
        """Topics first (so a trainer starting first cannot create them wrong), worker, trainer."""
        await ensure_all_topics(self.settings)
        await self.start()
        self.start_trainer()

    def start_trainer(self) -> None:
        self.trainer = self.spawn("trainer", self.tmp / "trainer.log")

    def spawn(self, command: str, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "app.cli", command],
                cwd=ROOT,
                env=env or self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def kill_trainer_hard(self) -> None:
        assert self.trainer is not None
        os.killpg(self.trainer.pid, signal.SIGKILL)
        self.trainer.wait(10)
        self.trainer = None

    def kill_hard(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.trainer is not None:
            os.killpg(self.trainer.pid, signal.SIGTERM)
            self.trainer.wait(30)
            self.trainer = None
        if self.process is None:
            return
        if self.process.poll() is not None:
            self.process = None
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self.headers) as http, http.get(self.url + path) as response:
            return response.status, await response.json()

    async def advance_clock(self, millis: int) -> None:
        """Move the worker's clock forward (it runs with TIDEMAIL_ALLOW_CLOCK_CONTROL)."""
        async with (
            aiohttp.ClientSession(headers=self.headers) as http,
            http.post(self.url + "/admin/clock", json={"advance_ms": millis}) as response,
        ):
            assert response.status == 200

    async def text(self, path: str, method: str = "GET") -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(headers=self.headers) as http,
            http.request(method, self.url + path) as response,
        ):
            return response.status, await response.text()

    async def wait_for(self, ready: Any, path: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                status, body = await self.get(path)
                if status == 200 and ready(body):
                    return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting on {path}; log:\n{self.log_tail()}")

    async def wait_until_caught_up(self, timeout: float = 90) -> None:
        """Until the hot path's committed offsets reach the end of every events partition."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed, ends = await self._offsets()
            if all(committed[tp] >= ends[tp] for tp in ends):
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"worker did not catch up in {timeout}s; log:\n{self.log_tail()}")

    async def committed_total(self) -> int:
        committed, _ = await self._offsets()
        return sum(committed.values())

    async def _offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        tps = [TopicPartition(self.settings.events_topic, p) for p in range(PARTITIONS)]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=f"{self.settings.app_id}-hot-path"
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
            committed = {tp: (await consumer.committed(tp)) or 0 for tp in tps}
            return committed, ends
        finally:
            await consumer.stop()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else "(no log)"


@dataclass
class DelivererHarness:
    """`tidemail deliver` for a `WorkerHarness`'s deployment (its topics and app id), sending
    to an SMTP server on `smtp_port`, with its own metrics port and clock control."""

    deployment: WorkerHarness
    smtp_port: int
    env_overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.env = {
            **self.deployment.env,
            "TIDEMAIL_SMTP_HOST": "127.0.0.1",
            "TIDEMAIL_SMTP_PORT": str(self.smtp_port),
            "TIDEMAIL_DELIVERER_METRICS_PORT": str(self.port),
            "TIDEMAIL_DELIVERY_RETRY_BASE_MS": "200",
            "TIDEMAIL_LOG_LEVEL": "info",
            **self.env_overrides,
        }
        self.settings = Settings.from_env({k: v for k, v in self.env.items() if k.startswith("TIDEMAIL_")})
        self.log_path = self.deployment.tmp / "deliver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Spawn it and wait until the group gave it partitions."""
        self.process = self.deployment.spawn("deliver", self.log_path, self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"deliverer exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                _, health = await self.get("/health")
                if health["assigned_partitions"]:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"deliverer got no partitions in 60 s; log:\n{self.log_tail()}")

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as response:
            return response.status, await (response.json() if path != "/metrics" else response.text())

    async def advance_clock(self, millis: int) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url + "/admin/clock", json={"advance_ms": millis}) as response,
        ):
            assert response.status == 200

    def kill_hard(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    async def stop(self) -> None:
        """SIGTERM, then wait without blocking the loop: the test's SMTP server runs in it."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else "(no log)"


def signup(user: str, first_name: str | None, **context: str) -> tuple[bytes, bytes]:
    doc = event_doc("signup", user)
    doc["context"] = {"email": f"{user}@example.com", **({"first_name": first_name} if first_name else {}), **context}
    return user.encode(), encoded(doc)


async def welcome_emails(settings: Settings) -> list[dict[str, Any]]:
    """The first welcome email of each user on the jobs topic. Test events carry fixed
    timestamps (`BASE_TS`), so as the days pass the series' later steps, and reminders for
    carts in the same test, fall due as soon as a worker starts; they are not checked here."""
    jobs = await email_jobs(settings)
    return [job for job in jobs if job.get("flow", "welcome") == "welcome" and job.get("step", 1) == 1]


async def email_jobs(settings: Settings) -> list[dict[str, Any]]:
    """Every email job on the jobs topic, less the withdrawal records beside them."""
    records = await read_topic(settings.kafka_bootstrap, settings.jobs_topic)
    return [orjson.loads(r.value) for r in records if not is_withdrawal(r.headers)]


def keyed(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    return doc["user_id"].encode(), encoded(doc)


async def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in `topic`, in partition then offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        await consumer.stop()


async def assert_durable_state_is_single_pass(settings: Settings) -> BatchResult:
    """Every user's state in the changelog equals one pass of the pure pipeline over the
    events topic; returns that pass so callers can compare its jobs too."""
    records = await read_topic(settings.kafka_bootstrap, settings.events_topic)
    by_partition: dict[int, list[InputRecord]] = defaultdict(list)
    for r in records:
        by_partition[r.partition].append(InputRecord(r.partition, r.offset, r.key, r.value, r.timestamp, r.headers))
    expected = build_processor(settings, Clock()).process(by_partition, lambda partition, user: None)
    expected_states = {user: state for states in expected.changes.states.values() for user, state in states.items()}
    durable: dict[str, UserState] = {}
    for r in await read_topic(settings.kafka_bootstrap, f"{settings.app_id}-users-changelog"):
        if is_user_key(r.key):
            durable[r.key.decode()] = decode_state(r.value)
    assert set(durable) == set(expected_states)
    # Compare after a JSON round trip, as the worker's states have been through one.
    mismatched = [u for u, state in expected_states.items() if decode_state(encode_state(state)) != durable[u]]
    assert mismatched == []
    return expected


async def ensure_all_topics(settings: Settings) -> None:
    """Create the deployment's topics up front, for tests that produce before a worker starts."""
    await ensure_deployment_topics(settings)
