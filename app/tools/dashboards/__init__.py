"""Tidemail's Grafana dashboards as code (grafana-foundation-sdk), written as JSON into
docker/grafana/dashboards/, which Grafana provisions in the compose stack.

`python -m app.tools.dashboards` writes them; `--check` fails if the committed JSON differs
from what the code generates (a test runs it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from app.tools.dashboards.deliverer import deliverer_dashboard
from app.tools.dashboards.models import models_dashboard
from app.tools.dashboards.worker import worker_dashboard

DASHBOARDS_DIR = Path(__file__).resolve().parents[3] / "docker" / "grafana" / "dashboards"
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "tidemail-worker.json": worker_dashboard,
    "tidemail-deliverer.json": deliverer_dashboard,
    "tidemail-models.json": models_dashboard,
}


def render() -> dict[str, str]:
    """Each dashboard's file name and JSON, as committed."""
    return {
        name: json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def stale(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """The files in `directory` that differ from what the code generates, or are missing."""
    return [
        name
        for name, text in render().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written
