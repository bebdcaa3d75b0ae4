"""`tidemail soak`: a million users through two workers, the trainer, the deliverer and an SMTP sink."""

from __future__ import annotations

import asyncio

import click


@click.command()
@click.option(
    "--users", default=1_000_000, show_default=True, help="Distinct users in the stream (all of them appear)."
)
@click.option(
    "--events", default=4_000_000, show_default=True, help="Events in the stream (about 3.5 per user or more)."
)
@click.option("--rate", default=0.0, show_default=True, help="Cap on events/s sent (0: as fast as the machine sends).")
@click.option("--seed", default=21, show_default=True)
@click.option("--partitions", default=8, show_default=True)
@click.option("--quick", is_flag=True, help="A smoke run: 20,000 users and 80,000 events.")
@click.option("--keep", is_flag=True, help="Keep the deployment's topics, data and logs afterwards.")
@click.option(
    "--latency", is_flag=True, help="Measure only latency: event to job and to durable state at 1k and 5k events/s."
)
def soak(
    users: int, events: int, rate: float, seed: int, partitions: int, quick: bool, keep: bool, latency: bool
) -> None:
    """Run two workers, the trainer, the deliverer and an SMTP sink on a stream of a million users;
    report throughput (1 and 2 workers), state bytes per user, RSS, restart times and timer lag."""
    if latency:
        from app.tools.soak_latency import run_latency

        asyncio.run(run_latency(seconds=10 if quick else 20, users=100_000, seed=seed))
        click.echo(f"command: tidemail soak --latency{' --quick' if quick else ''} --seed {seed}")
        return
    # Imported here: the worker's wiring and RocksDB are slow to import for every other command.
    from app.tools.soak import SoakOptions, run_soak
    from app.tools.soak_report import format_report

    if quick:
        users, events = 20_000, 80_000
    options = SoakOptions(users, events, seed, rate or None, partitions, keep)
    click.echo(format_report(asyncio.run(run_soak(options))))
    click.echo(f"command: tidemail soak --users {users} --events {events} --seed {seed} --partitions {partitions}")
