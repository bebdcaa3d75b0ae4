"""The compose file, read as the structure Docker Compose reads (`docker compose config` runs
too where the binary exists)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[3] / "docker"
COMPOSE = DOCKER / "compose.yaml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def listeners(value: str) -> dict[str, str]:
    return dict(entry.split("://", 1) for entry in value.split(","))


def test_containers_use_the_internal_listener_and_the_host_the_published_one() -> None:
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    advertised = listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert advertised["INTERNAL"].startswith("kafka:")
    external_port = advertised["EXTERNAL"].rsplit(":", 1)[1]
    assert advertised["EXTERNAL"].startswith("localhost:")
    assert f"{external_port}:{external_port}" in services["kafka"]["ports"]
    bootstraps = {
        name: service["environment"]["TIDEMAIL_KAFKA_BOOTSTRAP"]
        for name, service in services.items()
        if "TIDEMAIL_KAFKA_BOOTSTRAP" in service.get("environment", {})
    }
    assert bootstraps and set(bootstraps.values()) == {advertised["INTERNAL"]}


def test_state_that_must_outlive_a_restart_is_in_named_volumes() -> None:
    document = compose()
    declared = set(document["volumes"])
    services = document["services"]
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    mounts = {name: [v.split(":")[0] for v in s.get("volumes", [])] for name, s in services.items()}
    assert "kafka-data" in mounts["kafka"] and "worker-data" in mounts["worker"]
    # Redis keeps delivery claims in an append-only file in its volume (/data is where the image writes it).
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert services["redis"]["command"][1:] == ["--appendonly", "yes", "--appendfsync", "everysec"]
    used = {source for sources in mounts.values() for source in sources if not source.startswith(".")}
    assert used <= declared


def test_the_image_context_leaves_out_what_it_does_not_need() -> None:
    ignored = (DOCKER.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".cache", "tests"} <= set(ignored)


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose is not installed here; the structure tests above stand in for it",
)
def test_docker_compose_accepts_the_file() -> None:
    # The worker's secrets are required (docker/.env.example); any values do for the syntax.
    secrets = {
        name: "x" * 16 for name in ("TIDEMAIL_UNSUBSCRIBE_SECRET", "TIDEMAIL_API_TOKENS", "TIDEMAIL_ADMIN_TOKENS")
    }
    command = ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"]
    subprocess.run(command, check=True, timeout=60, env={**os.environ, **secrets})
