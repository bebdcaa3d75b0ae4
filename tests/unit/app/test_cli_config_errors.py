"""A configuration error ends a `tidemail` command with one line on stderr and status 2; a
broker that never answers at start-up, after a wait, with one line and status 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def tidemail(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMAIL_")} | env
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_a_production_worker_without_its_secrets_exits_2_with_one_line() -> None:
    # Refused before it connects to anything: no broker is needed to see it.
    result = tidemail("worker", TIDEMAIL_ENV="production", TIDEMAIL_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("tidemail: TIDEMAIL_ENV=production refuses to start: TIDEMAIL_UNSUBSCRIBE_SECRET")
    assert "Traceback" not in result.stderr


def test_a_bad_setting_exits_2_with_one_line_naming_it() -> None:
    result = tidemail("generate", "--events", "1", TIDEMAIL_PARTITIONS="many")
    assert (result.returncode, result.stderr) == (
        2,
        "tidemail: TIDEMAIL_PARTITIONS must be a whole number; got 'many'\n",
    )


def test_a_process_started_while_kafka_is_away_waits_then_exits_1_with_one_line() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{unused.getsockname()[1]}"
    started = time.monotonic()
    result = tidemail(
        "deliver",
        TIDEMAIL_KAFKA_BOOTSTRAP=bootstrap,
        TIDEMAIL_KAFKA_STARTUP_WAIT_S="1.5",
        TIDEMAIL_DELIVERER_METRICS_PORT="0",
    )
    assert result.returncode == 1
    assert time.monotonic() - started >= 1.5
    assert f"tidemail: Kafka at {bootstrap} (TIDEMAIL_KAFKA_BOOTSTRAP) did not answer in 1.5 s" in result.stderr
    assert "Traceback" not in result.stderr
    # It tried more than once before giving up.
    assert "does not answer (attempt 2)" in result.stderr
