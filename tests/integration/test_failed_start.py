"""A worker that cannot start says why and stops: nothing it never started hides the error."""

from __future__ import annotations

import socket

import pytest

from tests.integration.harness import WorkerHarness

pytestmark = pytest.mark.integration


async def test_a_worker_whose_web_port_is_taken_exits_naming_the_port(worker: WorkerHarness) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", worker.port))
        taken.listen()
        worker.process = worker.spawn("worker", worker.log_path)
        returncode = worker.process.wait(90)
    log = worker.log_path.read_text(errors="replace")
    assert returncode != 0
    assert "address already in use" in log.lower()
    assert "AttributeError" not in log
