"""`tidemail chaos`: run the shop's world under a seeded schedule of faults, then verify it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click


@click.command()
@click.option("--users", default=1_000_000, show_default=True)
@click.option("--events", default=2_000_000, show_default=True)
@click.option("--rate", default=2_500.0, show_default=True, help="Events/s produced; the faults span that time.")
@click.option("--seed", default=7, show_default=True, help="Seeds the world and the fault schedule.")
@click.option("--workers", default=2, show_default=True)
@click.option("--partitions", default=8, show_default=True)
@click.option("--worker-kills", default=10, show_default=True)
@click.option("--deliverer-kills", default=3, show_default=True)
@click.option("--trainer-kills", default=1, show_default=True)
@click.option("--broker-kills", default=1, show_default=True)
@click.option("--redis-kills", default=1, show_default=True)
@click.option("--worker-pauses", default=1, show_default=True, help="SIGSTOP past the session timeout, then SIGCONT.")
@click.option("--pause-seconds", default=15.0, show_default=True, help="How long a paused worker stays stopped.")
@click.option(
    "--crm-sync/--no-crm-sync",
    default=True,
    show_default=True,
    help="The CRM publishes every user's profile once during the run, so every user has a state.",
)
@click.option("--dir", "directory", default=".cache/chaos", show_default=True, help="The run's broker, logs, emails.")
@click.option("--keep", is_flag=True, help="Keep the run's directory (logs, broker data, emails) afterwards.")
def chaos(
    users: int,
    events: int,
    rate: float,
    seed: int,
    workers: int,
    partitions: int,
    pause_seconds: float,
    crm_sync: bool,
    directory: str,
    keep: bool,
    **fault_counts: int,
) -> None:
    """Run workers, a trainer, the deliverer and an SMTP sink on a broker and Redis of their own
    while faults strike; print a line per fault, then verify every user's state, job, segment
    change and email against one pass of the pure core (exit status 1 if anything differs)."""
    from app.tools.chaos import ChaosPlan, run_chaos
    from app.tools.chaos_faults import FaultCounts

    # The run polls its broker while it restarts: aiokafka logs each refused connection.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    counts = FaultCounts(**fault_counts)  # the options named like its fields
    plan = ChaosPlan(
        users, events, rate, seed, workers, partitions, pause_s=pause_seconds, faults=counts, crm_sync=crm_sync
    )
    verdict = asyncio.run(run_chaos(plan, Path(directory), keep))
    sys.exit(0 if verdict.ok else 1)
