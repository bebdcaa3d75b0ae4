"""The chaos run's processes: workers, a trainer, the deliverer and an SMTP sink, each in a
session of its own so that a signal reaches it whole, and each restartable under its name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.tools.chaos_services import free_port
from app.tools.common import launch, stop_processes, tidemail_command

# The sink goes last when stopping, so the deliverer's last messages still land.
STOP_ORDER = ("deliverer", "trainer", "worker", "sink")


@dataclass
class Fleet:
    """Named processes sharing one deployment's environment (`env`)."""

    root: Path
    env: Mapping[str, str]
    workers: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    # Processes that ended without being told to, by name, with their exit status.
    exits: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports["deliverer"] = free_port()
        self.ports["sink"] = free_port()
        for n in range(self.workers):
            self.ports[self.worker(n)] = free_port()

    @staticmethod
    def worker(n: int) -> str:
        return f"worker-{n}"

    @property
    def names(self) -> list[str]:
        return [*(self.worker(n) for n in range(self.workers)), "trainer", "sink", "deliverer"]

    @property
    def sink_dir(self) -> Path:
        return self.root / "sink"

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def start(self, name: str) -> None:
        command = {"trainer": "trainer", "sink": "smtp-sink", "deliverer": "deliver"}.get(name, "worker")
        self.processes[name] = launch(
            tidemail_command(command), self.root / f"{name}.log", env=self._env_of(name), append=True
        )

    def _env_of(self, name: str) -> dict[str, str]:
        own: dict[str, str] = {}
        if name.startswith("worker"):
            own = {"TIDEMAIL_WEB_PORT": str(self.ports[name]), "TIDEMAIL_DATA_DIR": str(self.root / name)}
        elif name == "deliverer":
            own = {"TIDEMAIL_DELIVERER_METRICS_PORT": str(self.ports[name])}
        elif name == "sink":
            own = {"TIDEMAIL_SMTP_SINK_DIR": str(self.sink_dir)}
        return {**self.env, **own, "TIDEMAIL_SMTP_PORT": str(self.ports["sink"])}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def signal(self, name: str, signum: signal.Signals) -> None:
        os.killpg(self.processes[name].pid, signum)

    def kill(self, name: str) -> None:
        """kill -9 the process (its whole session) and reap it."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def running(self, name: str) -> bool:
        return name in self.processes

    def reap_unexpected_exits(self) -> list[str]:
        """Names of processes that ended on their own since the last call (restart them)."""
        ended = [name for name, p in self.processes.items() if p.poll() is not None]
        for name in ended:
            self.exits.append((name, self.processes.pop(name).returncode))
        return ended

    def stop_all(self) -> None:
        for role in STOP_ORDER:
            group = [p for name, p in self.processes.items() if name.startswith(role)]
            stop_processes(group, grace_s=30)
        self.processes.clear()
