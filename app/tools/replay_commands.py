"""`tidemail dead-letters list|replay` and `tidemail replay`: the operator's way back into the events topic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.settings import Settings

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        yield bar


def _instant(_: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from app.tools.replay import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param=param) from e


SINCE = click.option("--since", callback=_instant, help="Records written at or after this instant (RFC 3339).")
UNTIL = click.option("--until", callback=_instant, help="Records written before this instant (RFC 3339).")


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect the dead-letter topic, and replay records into the events topic after a fix."""


@dead_letters.command("list")
@click.option("--kind", default=None, help="Only this kind (invalid_event, render_failed, ...).")
@SINCE
@UNTIL
@click.option("--limit", default=50, show_default=True, help="Rows to show (the counts cover all).")
def list_command(kind: str | None, since: int | None, until: int | None, limit: int) -> None:
    """Show dead letters with their kind and reason, and how many of each kind."""
    from app.tools.replay import Window, header, list_dead_letters

    settings = Settings.from_env()
    with progress_bar("reading") as bar:
        task = bar.add_task(f"reading {settings.dead_letter_topic}", total=None)
        records, kinds = asyncio.run(
            list_dead_letters(
                settings.kafka_bootstrap,
                settings.dead_letter_topic,
                kind,
                Window(since, until),
                lambda done, total: bar.update(task, completed=done, total=total),
            )
        )
    # Plain tab-separated lines, so the list can be piped to grep, cut or a spreadsheet.
    click.echo("partition\toffset\tkind\tsource\treason")
    for record in records[:limit]:
        source = f"{header(record, 'tidemail.source.partition')}@{header(record, 'tidemail.source.offset')}"
        reason = " ".join((header(record, "tidemail.reason") or "").split())
        click.echo(f"{record.partition}\t{record.offset}\t{header(record, 'tidemail.kind')}\t{source}\t{reason}")
    counts = ", ".join(f"{name} {n:,}" for name, n in kinds.most_common()) or "none"
    click.echo(f"{len(records):,} matching; by kind: {counts}")


@dead_letters.command("replay")
@click.option("--kind", required=True, help="The kind to replay (invalid_event, render_failed, ...).")
@SINCE
@UNTIL
@click.option("--dry-run", is_flag=True, help="Count what would be replayed, publish nothing.")
def replay_dead_letters(kind: str, since: int | None, until: int | None, dry_run: bool) -> None:
    """Re-publish dead letters of one kind to the events topic, original key, value and headers kept."""
    from app.tools.replay import Window, list_dead_letters, republish

    settings = Settings.from_env()
    with progress_bar("reading") as bar:
        task = bar.add_task(f"reading {settings.dead_letter_topic}", total=None)
        records, _ = asyncio.run(
            list_dead_letters(
                settings.kafka_bootstrap,
                settings.dead_letter_topic,
                kind,
                Window(since, until),
                lambda done, total: bar.update(task, completed=done, total=total),
            )
        )
    if dry_run:
        click.echo(f"{len(records):,} dead letters of kind {kind} would be replayed to {settings.events_topic}")
        return
    sent = asyncio.run(republish(settings.kafka_bootstrap, settings.events_topic, records))
    click.echo(f"replayed {sent:,} dead letters of kind {kind} to {settings.events_topic}")


@click.command("replay")
@click.option("--from-topic", required=True, help="Where to read (say, another deployment's events topic).")
@SINCE
@UNTIL
@click.option("--to-topic", default=None, help="Where to write (default: this deployment's events topic).")
def replay(from_topic: str, since: int | None, until: int | None, to_topic: str | None) -> None:
    """Copy the records written to a topic in a time range into the events topic (a backfill or a
    re-run into a fresh deployment); events older than TIDEMAIL_MAX_TRIGGER_AGE update state but send nothing."""
    from app.tools.replay import Window, read_window, republish

    settings = Settings.from_env()
    target = to_topic or settings.events_topic
    if target == from_topic:
        raise click.BadParameter("must differ from --from-topic: a topic replayed into itself never ends")
    with progress_bar("replaying") as bar:
        task = bar.add_task(f"{from_topic} -> {target}", total=None)
        records = read_window(
            settings.kafka_bootstrap,
            from_topic,
            Window(since, until),
            lambda done, total: bar.update(task, completed=done, total=total),
        )
        sent = asyncio.run(republish(settings.kafka_bootstrap, target, records))
    click.echo(f"replayed {sent:,} records from {from_topic} to {target}")
