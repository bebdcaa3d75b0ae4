"""The Grafana dashboards are generated: the committed JSON is what the code makes, and every
panel queries the provisioned Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

from app.tools.dashboards import DASHBOARDS_DIR, render, stale, write
from app.tools.dashboards.__main__ import main


def test_the_committed_dashboards_are_what_the_code_generates() -> None:
    assert stale() == [], "run `python -m app.tools.dashboards` and commit docker/grafana/dashboards/"
    assert sorted(path.name for path in DASHBOARDS_DIR.glob("*.json")) == sorted(render())


def test_a_changed_or_missing_dashboard_is_reported(tmp_path: Path) -> None:
    write(tmp_path)
    assert stale(tmp_path) == []
    (tmp_path / "tidemail-models.json").write_text("{}")
    (tmp_path / "tidemail-worker.json").unlink()
    assert stale(tmp_path) == ["tidemail-worker.json", "tidemail-models.json"]
    assert main(["--check"]) == 0
    assert main(["--bogus"]) == 2


def test_every_panel_queries_prometheus_with_unique_ids_and_ref_ids() -> None:
    for name, text in render().items():
        board = json.loads(text)
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, (name, panel["title"])
            refs = [target["refId"] for target in panel["targets"]]
            assert panel["targets"] and len(refs) == len(set(refs)), (name, panel["title"])
            assert all(target["expr"] for target in panel["targets"])
