"""The alert rules and Prometheus configuration, checked by Prometheus' own promtool (installed
by `make test-tools`): syntax, and the unit tests in alerts.test.yml, which must fire and
not fire every alert; each alert's runbook paragraph exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.docker.test_compose import DOCKER, compose

PROMETHEUS = DOCKER / "prometheus"
RUNBOOK = DOCKER.parent / "docs" / "runbook.md"


def promtool(*args: str) -> str:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: `make test-tools` installs Debian's prometheus package")
    done = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_the_configuration() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    promtool("check", "rules", "alerts.yml")


def test_every_alert_fires_and_stays_quiet_in_promtools_unit_tests() -> None:
    promtool("test", "rules", "alerts.test.yml")
    document = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    expectations = [case for test in document["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        cases = [case for case in expectations if case["alertname"] == alert["alert"]]
        assert any(case["exp_alerts"] for case in cases), f"{alert['alert']} is never shown firing"
        assert any(not case["exp_alerts"] for case in cases), f"{alert['alert']} is never shown quiet"


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of `markdown`."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_alert_links_its_runbook_paragraph() -> None:
    found = anchors(RUNBOOK.read_text())
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbook.md" and anchor in found, (alert["alert"], url)
        assert {"summary", "description"} <= set(alert["annotations"]), alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}


def test_compose_runs_prometheus_with_the_rules_and_grafana_with_the_dashboards() -> None:
    services = compose()["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "alertmanager" in services
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"tidemail-worker", "tidemail-trainer", "tidemail-deliverer"}
    grafana = DOCKER / "grafana"
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in services["grafana"]["volumes"])
    assert mounts == {
        "./grafana/provisioning": "/etc/grafana/provisioning",
        "./grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    datasource = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert (datasource["uid"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    provider = yaml.safe_load((grafana / "provisioning/dashboards/tidemail.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
