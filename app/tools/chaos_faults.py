"""The chaos run's faults: a seeded schedule of when each strikes, and how each is done and undone.

Every fault ends with the system whole again (the process restarted, the broker back, the
paused worker continued), so faults run one after another and each prints one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from app.tools.chaos_fleet import Fleet
from app.tools.chaos_services import Services

WORKER_KILL, DELIVERER_KILL, TRAINER_KILL = "worker-kill", "deliverer-kill", "trainer-kill"
BROKER_KILL, REDIS_KILL, WORKER_PAUSE = "broker-kill", "redis-kill", "worker-pause"


@dataclass(frozen=True, slots=True)
class FaultCounts:
    """How many of each fault a run injects."""

    worker_kills: int = 10
    deliverer_kills: int = 3
    trainer_kills: int = 1
    broker_kills: int = 1
    redis_kills: int = 1
    worker_pauses: int = 1

    def kinds(self) -> list[str]:
        return (
            [WORKER_KILL] * self.worker_kills
            + [DELIVERER_KILL] * self.deliverer_kills
            + [TRAINER_KILL] * self.trainer_kills
            + [BROKER_KILL] * self.broker_kills
            + [REDIS_KILL] * self.redis_kills
            + [WORKER_PAUSE] * self.worker_pauses
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: when it strikes (seconds from the start), what, and how long it lasts."""

    at_s: float
    kind: str
    # How long the process stays dead (or paused) before it is restarted (or continued).
    down_s: float
    # Which worker, for the worker faults (an index, taken modulo the workers).
    target: int


# How long the system runs whole after an outage before the next fault strikes: a paused
# worker resumes the batch it had in flight and meets its fencing, a restarted one rejoins.
AFTERMATH_S = 5.0


def schedule(counts: FaultCounts, window_s: tuple[float, float], seed: int, pause_s: float) -> list[Fault]:
    """The faults in the order they strike: shuffled by `seed`, at random instants in `window_s`,
    each over `AFTERMATH_S` before the next."""
    rng = random.Random(seed)
    kinds = counts.kinds()
    rng.shuffle(kinds)
    start, end = window_s
    slot = (end - start) / max(len(kinds), 1)
    faults: list[Fault] = []
    for n, kind in enumerate(kinds):
        down = round(pause_s if kind == WORKER_PAUSE else rng.uniform(1.0, min(10.0, slot * 0.4)), 1)
        # A random instant in the first part of its own slot, unless the last outage runs into it.
        at = start + n * slot + rng.uniform(0, max(slot - down, 0) * 0.5)
        if faults:
            at = max(at, faults[-1].at_s + faults[-1].down_s + AFTERMATH_S)
        faults.append(Fault(round(at, 1), kind, down, rng.randrange(1 << 16)))
    return faults


async def inject(fault: Fault, fleet: Fleet, services: Services) -> str:
    """Do the fault, wait out its outage, undo it; return what was done, for the run's log."""
    started = time.monotonic()
    if fault.kind in (WORKER_KILL, WORKER_PAUSE):
        name = _running_worker(fleet, fault.target)
    else:
        name = {DELIVERER_KILL: "deliverer", TRAINER_KILL: "trainer"}.get(fault.kind, "")
    if fault.kind == BROKER_KILL:
        services.kill_kafka()
        await asyncio.sleep(fault.down_s)
        await services.start_kafka()
        done = f"kill -9 the broker, restarted after {fault.down_s:.1f} s"
    elif fault.kind == REDIS_KILL:
        services.kill_redis()
        await asyncio.sleep(fault.down_s)
        await services.start_redis()
        done = f"kill -9 Redis, restarted after {fault.down_s:.1f} s (append-only file kept)"
    elif fault.kind == WORKER_PAUSE:
        await until_computing(fleet.processes[name].pid)
        fleet.signal(name, signal.SIGSTOP)
        await asyncio.sleep(fault.down_s)
        fleet.signal(name, signal.SIGCONT)
        done = f"SIGSTOP {name} for {fault.down_s:.1f} s (beyond the session timeout), then SIGCONT"
    else:
        pid = fleet.processes[name].pid
        fleet.kill(name)
        await asyncio.sleep(fault.down_s)
        fleet.start(name)
        done = f"kill -9 {name} (pid {pid}), restarted after {fault.down_s:.1f} s"
    return f"{done}; whole again {time.monotonic() - started:.1f} s after it struck"


async def until_computing(pid: int, timeout: float = 10) -> None:
    """Until the process is on a CPU (state R), or `timeout`: a worker paused while it waits
    for events has no batch in flight, and the pause would test nothing a kill does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            # The state follows the command name in parentheses, which may hold spaces.
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                return
        await asyncio.sleep(0.002)


def _running_worker(fleet: Fleet, target: int) -> str:
    running = [fleet.worker(n) for n in range(fleet.workers) if fleet.running(fleet.worker(n))]
    return running[target % len(running)]
