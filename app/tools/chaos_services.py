"""A Kafka broker and a Redis of the chaos run's own, on ports of its own, so killing them
with -9 disturbs no one else's tests; they keep their data (a log directory, an append-only
file) across the restarts the schedule asks for, and are deleted with the run's directory.

The broker runs from the jars `scripts/services.sh` fetches into `.cache/kafka/libs`, with
the same single-node KRaft configuration.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from app.tools.common import launch

KAFKA_LIBS = Path(".cache/kafka/libs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def broker_properties(data: Path, port: int, controller_port: int) -> str:
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=8
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""


def _java(*args: str) -> list[str]:
    classpath = f"{KAFKA_LIBS.resolve()}/*"
    return ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true", "-cp", classpath, *args]


@dataclass
class Services:
    """The run's broker and Redis: started, killed with -9 and restarted on the same data."""

    root: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    kafka: subprocess.Popen[bytes] | None = None
    redis: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    async def start(self) -> None:
        if not (KAFKA_LIBS / ".complete").exists():
            raise RuntimeError(f"no Kafka jars in {KAFKA_LIBS}: run scripts/services.sh up once first")
        (self.root / "kafka-data").mkdir(parents=True, exist_ok=True)
        config = self.root / "server.properties"
        config.write_text(
            broker_properties((self.root / "kafka-data").resolve(), self.kafka_port, self.controller_port)
        )
        log4j = self.root / "log4j2.properties"
        log4j.write_text("rootLogger.level=WARN\n")
        cluster = uuid.uuid4().hex[:22]
        format_cmd = _java("kafka.tools.StorageTool", "format", "--ignore-formatted", "--cluster-id", cluster)
        subprocess.run([*format_cmd, "--config", str(config)], check=True, capture_output=True)
        await self.start_kafka()
        await self.start_redis()

    async def start_kafka(self) -> None:
        args = _java(f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}", "kafka.Kafka")
        self.kafka = launch([*args, str(self.root / "server.properties")], self.root / "kafka.log", append=True)
        await wait_for_kafka(self.bootstrap)

    async def start_redis(self) -> None:
        (self.root / "redis").mkdir(exist_ok=True)
        argv = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        argv += ["--dir", str((self.root / "redis").resolve()), "--save", "", "--appendonly", "yes"]
        argv += ["--appendfsync", "everysec", "--daemonize", "no"]
        self.redis = launch(argv, self.root / "redis.log", append=True)
        await wait_for_port(self.redis_port)

    def kill_kafka(self) -> None:
        _kill_hard(self.kafka)
        self.kafka = None

    def kill_redis(self) -> None:
        _kill_hard(self.redis)
        self.redis = None

    def stop(self) -> None:
        for process in (self.kafka, self.redis):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    _kill_hard(process)
        self.kafka = self.redis = None


def _kill_hard(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


async def wait_for_port(port: int, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise TimeoutError(f"nothing listened on :{port} within {timeout}s")


async def wait_for_kafka(bootstrap: str, timeout: float = 180) -> None:
    """Until the broker answers and every partition has a leader (after a restart it loads them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            topics = await admin.list_topics()
            described = await admin.describe_topics(topics) if topics else []
            if not any(d.get("error_code") or any(p["leader"] < 0 for p in d["partitions"]) for d in described):
                return
        except Exception:
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"Kafka at {bootstrap} had no leader for every partition within {timeout}s")
