from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerHarness, delete_deployment


@pytest.fixture(scope="session", autouse=True)
def services() -> None:
    """Start (or find running) the project's own Kafka and Redis; idempotent."""
    subprocess.run([str(ROOT / "scripts/services.sh"), "up"], check=True)


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[WorkerHarness]:
    harness = WorkerHarness(tmp_path)
    yield harness
    harness.stop()
    await delete_deployment(harness.settings)
