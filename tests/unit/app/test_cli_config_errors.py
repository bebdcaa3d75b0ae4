"""A configuration error ends a `tidemail` command with one line on stderr and status 2."""

from __future__ import annotations

import os
import subprocess
import sys
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
