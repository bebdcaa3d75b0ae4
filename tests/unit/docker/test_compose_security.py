"""The compose stack runs Tidemail in production mode with secrets of the user's own, and
opens to the network only the servers Docker publishes."""

from __future__ import annotations

import re
from typing import Any

from tests.unit.docker.test_compose import DOCKER, compose

SECRETS = ("TIDEMAIL_UNSUBSCRIBE_SECRET", "TIDEMAIL_API_TOKENS", "TIDEMAIL_ADMIN_TOKENS")
# `${NAME:?message}`: Compose stops with the message when NAME is unset or empty.
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")


def tidemail_services() -> dict[str, Any]:
    """The services running the Tidemail image, but the SMTP sink (a stand-in for a relay)."""
    return {name: s for name, s in compose()["services"].items() if s.get("build") and name != "smtp-sink"}


def test_every_tidemail_service_runs_in_production() -> None:
    services = tidemail_services()
    assert set(services) == {"worker", "trainer", "deliver", "generator"}
    for name, service in services.items():
        assert service["environment"]["TIDEMAIL_ENV"] == "production", name


def test_the_worker_secrets_must_be_given_and_the_example_lists_each_empty() -> None:
    worker = compose()["services"]["worker"]["environment"]
    for name in SECRETS:
        match = REQUIRED.match(worker[name])
        assert match is not None and match.group(1) == name, worker[name]
    example = (DOCKER / ".env.example").read_text().splitlines()
    # Empty, so that a copy left unedited stops `docker compose up` rather than starting with known secrets.
    assert sorted(line for line in example if not line.startswith("#")) == sorted(f"{name}=" for name in SECRETS)
    assert "docker/.env" in (DOCKER.parent / ".gitignore").read_text().split()


def test_only_the_compose_file_opens_servers_to_the_network() -> None:
    instructions = [line for line in (DOCKER / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    assert not any("TIDEMAIL_WEB_HOST" in line for line in instructions)
    # Published ports (worker, deliverer) and Prometheus' scrape of the trainer.
    hosts = {name: s["environment"].get("TIDEMAIL_WEB_HOST") for name, s in tidemail_services().items()}
    assert hosts == {"worker": "0.0.0.0", "trainer": "0.0.0.0", "deliver": "0.0.0.0", "generator": None}
