"""A real Prometheus and Alertmanager (Debian's packages, `make test-tools`) for one test: own
ports and data directories, the committed configuration with its targets swapped for local
processes, scraping every second."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.integration.harness import ROOT, free_port

CONFIG_DIR = ROOT / "docker" / "prometheus"
DASHBOARDS_DIR = ROOT / "docker" / "grafana" / "dashboards"
# Grafana's variables, as a panel over the test's few minutes would have them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h"}
# A Tidemail metric, or `up`, with its matchers if any.
SELECTOR = re.compile(r"\b(up|tidemail_\w+)(\{[^}]*\})?")


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: `make test-tools` installs Debian's prometheus packages"
    return path


@dataclass
class Server:
    """A spawned server process and its HTTP API."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    async def get(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.url + path, params=params) as response:
            body = await response.json(content_type=None)
            assert response.status == 200, (path, params, body)
            return body

    async def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                async with aiohttp.ClientSession() as http, http.get(self.url + "/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.url} not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)


def start_alertmanager(tmp: Path) -> Server:
    port = free_port()
    command = [
        binary("prometheus-alertmanager"),
        f"--config.file={CONFIG_DIR / 'alertmanager.yml'}",
        f"--storage.path={tmp / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # No cluster: it would gossip on every interface.
        "--cluster.listen-address=",
    ]
    log_path = tmp / "alertmanager.log"
    return Server(_spawn(command, log_path), f"http://127.0.0.1:{port}", log_path)


def start_prometheus(tmp: Path, targets: dict[str, str], alertmanager: str, fast_alerts: set[str]) -> Server:
    """Prometheus with the committed jobs and rules, each job scraping `targets[job]`. The
    alerts in `fast_alerts` fire without their `for` wait, so a test need not sit through it."""
    config = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    rules = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] in fast_alerts:
                rule["for"] = "0s"
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules))
    config["rule_files"] = [str(tmp / "alerts.yml")]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        binary("prometheus"),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log_path = tmp / "prometheus.log"
    return Server(_spawn(command, log_path), f"http://127.0.0.1:{port}", log_path)


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target of every committed dashboard."""
    queries = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.stem}: {panel['title']} ({target['refId']})", target["expr"]))
    return queries


def alert_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())
    return [(f"alert {r['alert']}", r["expr"]) for group in rules["groups"] for r in group["rules"]]


def grafana_expanded(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


async def unanswered(prometheus: Server, where: str, expr: str, whole: bool) -> list[str]:
    """What is wrong with `expr`: a query Prometheus refuses, a selector (metric name and
    matchers) that matches no series (a typo), and with `whole`, an expression with no series."""
    expr = grafana_expanded(expr)
    problems = []
    answer = await prometheus.get("/api/v1/query", query=expr)
    if whole and not answer["data"]["result"]:
        problems.append(f"{where}: no series for {expr}")
    for name, matchers in set(SELECTOR.findall(expr)):
        selector = name + matchers
        found = await prometheus.get("/api/v1/query", query=f"count({selector})")
        if not found["data"]["result"]:
            problems.append(f"{where}: no series match {selector}")
    return problems
