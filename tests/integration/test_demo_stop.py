"""`tidemail demo` stops everything it started, within 10 s and without a traceback, whether a
terminal's Ctrl-C (SIGINT to its process group) or a `kill` (SIGTERM) ends it; and starts again.
So does `make demo` (make, then bash, then the demo) on Ctrl-C, as its banner asks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerHarness, delete_deployment, free_port

pytestmark = pytest.mark.integration


def demo_env(deployment: WorkerHarness, tmp: Path) -> dict[str, str]:
    ports = {name: str(free_port()) for name in ("WEB", "DELIVERER_METRICS", "TRAINER_METRICS", "SMTP")}
    return {
        **deployment.env,
        "TIDEMAIL_WEB_PORT": ports["WEB"],
        "TIDEMAIL_DELIVERER_METRICS_PORT": ports["DELIVERER_METRICS"],
        "TIDEMAIL_TRAINER_METRICS_PORT": ports["TRAINER_METRICS"],
        "TIDEMAIL_SMTP_PORT": ports["SMTP"],
        "TIDEMAIL_SMTP_SINK_DIR": str(tmp / "mail"),
        "TIDEMAIL_UNSUBSCRIBE_BASE_URL": f"http://127.0.0.1:{ports['WEB']}/unsubscribe",
    }


TIDEMAIL_DEMO = [sys.executable, "-m", "app.cli", "demo", "--rate", "100"]
MAKE_DEMO = ["make", "--no-print-directory", "demo"]


def start_demo(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
            # A shell starts background jobs with SIGINT ignored; a terminal's foreground job has it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def wait_for_output(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {timeout}s; demo output:\n{log.read_text(errors='replace')[-3000:]}")


def processes_of(app_id: str) -> list[int]:
    """Processes (the demo's children among them) whose environment names this deployment."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if f"TIDEMAIL_APP_ID={app_id}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def listening(port: str) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", int(port))) == 0


@pytest.mark.parametrize(
    ("command", "how"),
    [(TIDEMAIL_DEMO, signal.SIGINT), (TIDEMAIL_DEMO, signal.SIGTERM), (MAKE_DEMO, signal.SIGINT)],
    ids=["ctrl-c", "kill", "make-ctrl-c"],
)
async def test_the_demo_stops_everything_it_started_and_starts_again(
    tmp_path: Path, command: list[str], how: signal.Signals
) -> None:
    deployment = WorkerHarness(tmp_path)
    env = demo_env(deployment, tmp_path)
    app_id = env["TIDEMAIL_APP_ID"]
    try:
        for attempt in range(2):
            log = tmp_path / f"demo-{attempt}.log"
            demo = start_demo(command, env, log)
            wait_for_output(log, "stop: Ctrl-C", timeout=120)
            assert len(processes_of(app_id)) >= 5  # the demo, worker, trainer, deliverer and sink
            stopped_at = time.monotonic()
            os.killpg(demo.pid, how)
            # make, interrupted, ends by the signal (as for any interrupted target) once its child is done.
            assert demo.wait(20) == (0 if command is TIDEMAIL_DEMO else -signal.SIGINT)
            assert time.monotonic() - stopped_at < 10
            output = log.read_text(errors="replace")
            assert "Traceback" not in output and "was destroyed but it is pending" not in output
            assert processes_of(app_id) == []
            ports = ("TIDEMAIL_WEB_PORT", "TIDEMAIL_DELIVERER_METRICS_PORT", "TIDEMAIL_SMTP_PORT")
            assert not any(listening(env[name]) for name in ports)
            # The broker was running before the demo: it is not the demo's to stop.
            assert listening(deployment.settings.kafka_bootstrap.rsplit(":", 1)[1])
    finally:
        for pid in processes_of(app_id):
            os.kill(pid, signal.SIGKILL)
        await delete_deployment(deployment.settings)
