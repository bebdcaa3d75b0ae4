"""A Tidemail deployment of its own on the shared broker, and the processes that run it:
workers (each with its own data directory and web port), the trainer, the deliverer and an
SMTP sink, started, waited for, stopped, killed and measured. `tidemail soak` drives one.

    deployment = Deployment.create("soak-20261203", Path(".cache/soak/20261203"), partitions=8)
    fleet = Fleet(deployment)
    first = fleet.start_worker(1)
    seconds = await fleet.wait_ready(first)
    ...
    fleet.stop_all()
    await deployment.remove()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis.asyncio as redis
from aiokafka.admin import AIOKafkaAdminClient

from app.settings import Settings
from app.tools.common import get_json, launch, stop_processes, tidemail_command

# The settings naming a deployment's topics: each gets the deployment's name as prefix.
TOPIC_SETTINGS = (
    "events",
    "jobs",
    "dead_letter",
    "erasures",
    "segment_changes",
    "interactions",
    "item_model",
    "catalog",
    "deliveries",
)


def free_port() -> int:
    """A TCP port nothing on this machine listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Deployment:
    """Topics, consumer groups, Redis keys, tokens and a directory that no other deployment shares."""

    name: str
    root: Path
    env: Mapping[str, str]

    @classmethod
    def create(cls, name: str, root: Path, partitions: int, overrides: Mapping[str, str] | None = None) -> Deployment:
        root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "TIDEMAIL_APP_ID": name,
            **{f"TIDEMAIL_{topic.upper()}_TOPIC": f"{name}.{topic.replace('_', '-')}" for topic in TOPIC_SETTINGS},
            "TIDEMAIL_PARTITIONS": str(partitions),
            "TIDEMAIL_LOG_LEVEL": "warn",
            "TIDEMAIL_API_TOKENS": secrets.token_urlsafe(24),
            "TIDEMAIL_ADMIN_TOKENS": secrets.token_urlsafe(24),
            "TIDEMAIL_ALLOW_CLOCK_CONTROL": "true",
            "TIDEMAIL_SMTP_SINK_DIR": str(root / "smtp-sink"),
            **(overrides or {}),
        }
        return cls(name, root, env)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.admin_bearer_tokens[0]}"}

    async def remove(self) -> None:
        """Delete the deployment's topics (changelogs included), Redis keys and directory."""
        await delete_deployment(self.settings)
        shutil.rmtree(self.root, ignore_errors=True)


async def delete_deployment(settings: Settings) -> None:
    """Drop every topic of the deployment named by `settings.app_id` (its changelogs too)
    and its Redis keys (prediction cache, delivery claims), so a shared broker and Redis
    stay small."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        prefix = settings.app_id
        mine = [t for t in await admin.list_topics() if t.startswith((f"{prefix}.", f"{prefix}-"))]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    client = redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in client.scan_iter(f"tidemail:{settings.app_id}:*")]
        if keys:
            await client.delete(*keys)
    except redis.ConnectionError:
        pass  # a deployment pointed at no Redis left nothing there
    finally:
        await client.aclose()


@dataclass
class Member:
    """One process of the fleet: its role, where it answers HTTP, its log and data directory."""

    name: str
    command: str
    env: dict[str, str]
    url: str
    log_path: Path
    data_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"


class Fleet:
    """The processes of one deployment, by name: `worker-1`, `worker-2`, `trainer`, `deliverer`, `smtp-sink`."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.members: dict[str, Member] = {}
        self.smtp_port = free_port()

    def worker(self, n: int) -> Member:
        """Worker `n`, declared (with its own data directory and web port) on first mention."""
        name = f"worker-{n}"
        if name not in self.members:
            port = free_port()
            data_dir = self.deployment.root / name
            env = {
                **self.deployment.env,
                "TIDEMAIL_WEB_PORT": str(port),
                "TIDEMAIL_DATA_DIR": str(data_dir),
                "TIDEMAIL_UNSUBSCRIBE_BASE_URL": f"http://127.0.0.1:{port}/unsubscribe",
                "TIDEMAIL_TRAINER_METRICS_PORT": "0",
            }
            self.members[name] = self._member(name, "worker", env, f"http://127.0.0.1:{port}", data_dir)
        return self.members[name]

    def start_worker(self, n: int) -> Member:
        return self._start(self.worker(n))

    def start_trainer(self) -> Member:
        port = free_port()
        env = {**self.deployment.env, "TIDEMAIL_TRAINER_METRICS_PORT": str(port)}
        return self._start(self.members.get("trainer") or self._member("trainer", "trainer", env, _url(port)))

    def start_deliverer(self) -> Member:
        port = free_port()
        env = {
            **self.deployment.env,
            "TIDEMAIL_DELIVERER_METRICS_PORT": str(port),
            "TIDEMAIL_SMTP_HOST": "127.0.0.1",
            "TIDEMAIL_SMTP_PORT": str(self.smtp_port),
        }
        return self._start(self.members.get("deliverer") or self._member("deliverer", "deliver", env, _url(port)))

    def start_sink(self) -> Member:
        env = {**self.deployment.env, "TIDEMAIL_SMTP_HOST": "127.0.0.1", "TIDEMAIL_SMTP_PORT": str(self.smtp_port)}
        return self._start(self.members.get("smtp-sink") or self._member("smtp-sink", "smtp-sink", env, ""))

    def _member(self, name: str, command: str, env: dict[str, str], url: str, data_dir: Path | None = None) -> Member:
        return Member(name, command, env, url, self.deployment.root / f"{name}.log", data_dir)

    def _start(self, member: Member) -> Member:
        if member.running:
            raise RuntimeError(f"{member.name} is already running (pid {member.pid})")
        self.members[member.name] = member
        member.process = launch(tidemail_command(member.command), member.log_path, member.env, append=True)
        return member

    async def wait_ready(self, member: Member, timeout: float = 300) -> float:
        """Seconds from now until the member is ready: a worker's GET /ready answers 200, the
        deliverer has partitions, the sink accepts connections (the trainer: at once)."""
        started = time.monotonic()
        deadline = started + timeout
        async with aiohttp.ClientSession(headers=self.deployment.admin_headers) as http:
            while time.monotonic() < deadline:
                if not member.running:
                    raise RuntimeError(f"{member.name} exited; log:\n{member.log_tail()}")
                if await self._is_ready(http, member):
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{member.name} not ready in {timeout:.0f}s; log:\n{member.log_tail()}")

    async def _is_ready(self, http: aiohttp.ClientSession, member: Member) -> bool:
        if member.command == "worker":
            return await get_json(http, member.url + "/ready") is not None
        if member.command == "deliver":
            health = await get_json(http, member.url + "/health")
            return health is not None and bool(health["assigned_partitions"])
        if member.command == "smtp-sink":
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.smtp_port)
                writer.close()
                return True
            return False
        return True

    def stop(self, *names: str, grace_s: float = 30) -> None:
        """SIGTERM the named members (all of them together), killing any still running after `grace_s`."""
        members = [self.members[name] for name in names if self.members[name].running]
        stop_processes([m.process for m in members if m.process is not None], grace_s)

    def kill(self, name: str) -> None:
        """SIGKILL the member and its session: a crash, with nothing flushed."""
        member = self.members[name]
        if member.running:
            os.killpg(member.pid, signal.SIGKILL)
            assert member.process is not None
            member.process.wait()

    def stop_all(self, grace_s: float = 30) -> None:
        """Stop everything, the workers last (the deliverer and trainer read what they write)."""
        order = sorted(self.members, key=lambda name: name.startswith("worker"))
        for name in order:
            self.stop(name, grace_s=grace_s)

    def delete_local_state(self, n: int) -> None:
        """Worker `n`'s RocksDB: it must be stopped; started again it rebuilds from the changelog."""
        member = self.worker(n)
        if member.running:
            raise RuntimeError(f"{member.name} is running; stop it before deleting its state")
        assert member.data_dir is not None
        shutil.rmtree(member.data_dir, ignore_errors=True)

    def cpu_seconds(self, name: str) -> float:
        """CPU time the member has used so far, user and system (its children not counted)."""
        stat = Path(f"/proc/{self.members[name].pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_used(self, names: Iterable[str]) -> dict[str, float]:
        """`cpu_seconds` of each member named, to hand to `cores_since` later."""
        return {name: self.cpu_seconds(name) for name in names}

    def cores_since(self, before: Mapping[str, float], seconds: float) -> dict[str, float]:
        """The cores each member of `before` (from `cpu_used`) used on average over the `seconds` since."""
        return {name: (self.cpu_seconds(name) - used) / seconds for name, used in before.items()} if seconds else {}

    def rss_bytes(self, name: str) -> tuple[int, int]:
        """The member's resident memory now and its peak (VmRSS, VmHWM), in bytes."""
        status = Path(f"/proc/{self.members[name].pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return _kib(fields["VmRSS"]), _kib(fields["VmHWM"])


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _kib(value: str) -> int:
    return int(value.split()[0]) * 1024
