"""The `tidemail` command: the worker, trainer, deliverer and SMTP sink, and the tools around them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from typing import Any

import click

from app.settings import Settings
from app.tools.chaos_command import chaos
from app.tools.erase_command import erase
from app.tools.preview_command import preview
from app.tools.replay_commands import dead_letters, replay
from app.tools.soak_command import soak
from streams.core.errors import ConfigError, ServiceUnavailable


class _Commands(click.Group):
    """A configuration error ends any command with one line naming the problem, and status 2;
    a broker that never answered at start-up, with one line and status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            # The message says what is wrong and how to fix it; a traceback would bury it.
            click.echo(f"tidemail: {' '.join(str(e).split())}", err=True)
            ctx.exit(2)
        except ServiceUnavailable as e:
            click.echo(f"tidemail: {' '.join(str(e).split())}", err=True)
            ctx.exit(1)


@click.group(cls=_Commands)
@click.version_option(package_name="tidemail", message="tidemail %(version)s")
def main() -> None:
    """Tidemail: real-time personalization for triggered email."""


class _FaustWorkerCommand(click.Command):
    """`tidemail worker --help` lists the Faust worker options it passes through."""

    # Set from TIDEMAIL_* settings, or meaningless for a command that is not Faust's own CLI.
    NOT_PASSED = frozenset({"loglevel", "app", "version", "help", "json"})

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from faust.cli import worker as faust_worker

        def options_of() -> None:
            """Collects the decorators' options."""

        for option in reversed(faust_worker.worker.options):
            options_of = option(options_of)
        seen: set[str] = set()
        rows = []
        for param in getattr(options_of, "__click_params__", []):
            if isinstance(param, click.Option) and param.name not in self.NOT_PASSED | seen:
                seen.add(str(param.name))
                record = param.get_help_record(ctx)
                if record is not None:
                    rows.append(record)
        with formatter.section("Faust worker options (passed through)"):
            formatter.write_dl(rows)


@main.command(cls=_FaustWorkerCommand, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a worker. Faust worker options pass through (listed below), e.g. `--web-port 6067`;
    the log level comes from TIDEMAIL_LOG_LEVEL."""
    from app.faust_app import create_app, ensure_deployment_topics

    settings = Settings.from_env()
    settings.check_api_secrets()
    asyncio.run(ensure_deployment_topics(settings))
    app = create_app(settings)
    sys.argv = ["tidemail", "worker", "--loglevel", settings.faust_log_level, *ctx.args]
    _tune_garbage_collection()
    app.main()


def _tune_garbage_collection() -> None:
    # Every event allocates dozens of short-lived containers, while the state cache keeps
    # hundreds of thousands alive: at the default threshold (700) the collector runs every
    # few events and keeps re-walking the cache. A young collection walks every container
    # that survived since the last one, which here is mostly state about to be replaced by
    # the user's next event: the rarer it runs, the more of that has died unwalked (over
    # 400,000 events in process: 0.64 s at 50,000, 0.32 s at 200,000; with 50 segments,
    # whose states hold more containers, 1.56 s and 0.53 s). A collection of 200,000
    # takes ~0.1 s. Nothing here forms garbage cycles at a rate that needs it sooner;
    # what start-up built is never garbage at all.
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)
    from streams import metrics

    metrics.observe_gc_pauses()


@main.command()
def trainer() -> None:
    """Train the fleet's item model (run one or two; Kafka elects the one that trains)."""
    import signal

    from app.faust_app import create_trainer, ensure_deployment_topics

    settings = Settings.from_env()
    logging.basicConfig(level=settings.logging_level, format="[%(asctime)s] [trainer] %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    if settings.trainer_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.trainer_metrics_port, addr=settings.web_host)

    async def run() -> None:
        await ensure_deployment_topics(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await create_trainer(settings).run(stop)

    asyncio.run(run())


@main.command()
def deliver() -> None:
    """Send email jobs over SMTP when each is due, at most once per job id."""
    import signal

    from aiohttp import web

    from app.faust_app import ensure_deployment_topics
    from streams.core.clock import Clock
    from streams.delivery.deliverer import Deliverer
    from streams.delivery.web_server import web_app

    settings = Settings.from_env()
    logging.basicConfig(level=settings.logging_level, format="[%(asctime)s] [deliver] %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    async def run() -> None:
        await ensure_deployment_topics(settings)
        deliverer = Deliverer(settings.delivery, Clock())
        runner = web.AppRunner(web_app(deliverer), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.web_host, settings.deliverer_metrics_port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await deliverer.run(stop)
        finally:
            await runner.cleanup()

    asyncio.run(run())


@main.command()
def ingest() -> None:
    """Serve Segment's HTTP tracking API (track, identify, page, batch) into the events topic."""
    import signal

    from aiohttp import web

    from streams.ingest.server import ingest_app
    from streams.kafka.topics import ensure_topics

    settings = Settings.from_env()
    config = settings.ingest
    logging.basicConfig(level=settings.logging_level, format="[%(asctime)s] [ingest] %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if not config.write_keys:
        logging.warning("no write keys are set (TIDEMAIL_WRITE_KEYS): every request will be refused with 401")

    async def run() -> None:
        # Created here as the worker creates it, so events sent before any worker ran land
        # on the partitions the worker expects.
        await ensure_topics(
            settings.kafka_bootstrap, settings.partitions, settings.replication_factor, [settings.events_topic]
        )
        runner = web.AppRunner(ingest_app(config), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, config.host, config.port).start()
        logging.info("serving on http://%s:%d, producing to %s", config.host, config.port, config.events_topic)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            # Answers the requests in flight (their events acknowledged), then stops the producer.
            await runner.cleanup()

    asyncio.run(run())


@main.command("smtp-sink")
@click.option("--host", default=None, help="Listen address (default: TIDEMAIL_SMTP_HOST).")
@click.option("--port", type=int, default=None, help="Listen port (default: TIDEMAIL_SMTP_PORT).")
@click.option("--dir", "directory", default=None, help="Where to keep .eml files (default: TIDEMAIL_SMTP_SINK_DIR).")
def smtp_sink(host: str | None, port: int | None, directory: str | None) -> None:
    """A local SMTP server that keeps every message as an .eml file (for the demo and tests)."""
    from pathlib import Path

    from app.tools.smtp_sink import serve

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [smtp-sink] %(message)s")
    # aiosmtpd logs every SMTP command at INFO; one line per message is ours.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    address = (host or settings.smtp_host, port or settings.smtp_port)
    target = Path(directory) if directory else settings.smtp_sink_dir

    async def run() -> None:
        server = await serve(*address, target)
        logging.info("listening on %s:%d, keeping messages in %s", *address, target)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@main.command()
@click.option("--users", default=5_000, show_default=True, help="Distinct users in the stream.")
@click.option("--events", default=0, show_default=True, help="Stop after this many events (0: run until Ctrl-C).")
@click.option("--rate", default=500.0, show_default=True, help="Events per second (0: as fast as possible).")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--world",
    type=click.Choice(["shipped", "longtail"]),
    default="shipped",
    show_default=True,
    help="longtail: 2,000 products with Zipf popularity, mixed and drifting tastes, complements bought later.",
)
def generate(users: int, events: int, rate: float, seed: int, world: str) -> None:
    """Publish a realistic stream of shop events to the events topic."""
    from app.tools.generator import publish

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(publish(settings, users=users, limit=events or None, rate=rate or None, seed=seed, world=world))


@main.command("eval")
@click.option(
    "--world",
    "worlds",
    type=click.Choice(["shipped", "longtail"]),
    multiple=True,
    help="Generated world to evaluate on (repeatable; default: both).",
)
@click.option("--events", default=200_000, show_default=True, help="Events per run.")
@click.option("--seeds", default="3", show_default=True, help="Comma-separated seeds, one run each.")
@click.option(
    "--models",
    "parts",
    type=click.Choice(["recommenders", "engagement"]),
    multiple=True,
    help="Which models to evaluate (repeatable; default: both).",
)
def evaluate(worlds: tuple[str, ...], events: int, seeds: str, parts: tuple[str, ...]) -> None:
    """Recommenders (hit-rate@10, NDCG@10) and engagement models (AUC, send time, bandit), prequentially."""
    from app.tools.eval_reco import evaluate as run
    from app.tools.eval_report import report_board, report_targets

    try:
        seed_list = [int(seed) for seed in seeds.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"expected whole numbers separated by commas; got {seeds!r}", param_hint="--seeds"
        ) from None
    if not parts or "engagement" in parts:
        from app.tools.eval_engagement import engagement_report

        click.echo(engagement_report(seed_list))
    if parts and "recommenders" not in parts:
        return
    for world in worlds or ("shipped", "longtail"):
        boards = []
        for seed in seed_list:
            boards.append(run(world, events, seed))
            click.echo(report_board(boards[-1]))
        click.echo(report_targets(world, boards))


@main.command()
@click.option("--users", default=5_000, show_default=True)
@click.option("--rate", default=400.0, show_default=True, help="Events per second.")
@click.option(
    "--time-lapse",
    default=60.0,
    show_default=True,
    help="How much faster the worker's and deliverer's clocks run (60: a cart goes quiet in a minute).",
)
@click.option("--world", type=click.Choice(["shipped", "longtail"]), default="shipped", show_default=True)
def demo(users: int, rate: float, time_lapse: float, world: str) -> None:
    """Run a worker and a live event stream; print what comes out until Ctrl-C."""
    import secrets

    from app.tools.demo import run_demo

    if time_lapse != 1:
        os.environ["TIDEMAIL_ALLOW_CLOCK_CONTROL"] = "true"  # for the processes the demo starts
    # The demo's worker takes these unless the environment sets its own; the demo prints the API one.
    for name in ("TIDEMAIL_API_TOKENS", "TIDEMAIL_ADMIN_TOKENS"):
        os.environ.setdefault(name, secrets.token_urlsafe(24))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(Settings.from_env(), users, rate, time_lapse, world))


@main.command()
@click.option(
    "--events",
    default=200_000,
    show_default=True,
    help="Events per throughput pass (hot path contenders get two passes: users new, then known).",
)
@click.option("--latency-rate", default=1_000, show_default=True, help="Events/s during the latency run.")
@click.option("--latency-seconds", default=10, show_default=True)
@click.option("--partitions", default=8, show_default=True)
@click.option("--render-only", is_flag=True, help="Measure only rendering and the models on planted data.")
@click.option("--flows", "flows_only", is_flag=True, help="Measure only flow timer lag and jobs/s through governance.")
@click.option("--ingest-only", is_flag=True, help="Measure only HTTP ingestion (tidemail ingest): events/s, latency.")
def bench(
    events: int,
    latency_rate: int,
    latency_seconds: int,
    partitions: int,
    render_only: bool,
    flows_only: bool,
    ingest_only: bool,
) -> None:
    """Measure the hot path against a naive Faust agent, rendering against per-job MJML, flow timers
    and HTTP ingestion."""
    from app.tools.flow_bench import report_flows, run_flow_bench
    from app.tools.ingest_bench import report_ingest, run_ingest_bench

    if flows_only:
        click.echo(report_flows(asyncio.run(run_flow_bench())))
        return
    if ingest_only:
        click.echo(report_ingest(asyncio.run(run_ingest_bench(partitions))))
        return
    from app.tools.api_bench import report_api
    from app.tools.bench import API_RATE, report, run_bench
    from app.tools.eval_reco import evaluate as run_eval
    from app.tools.model_quality import model_state_sizes, report_models
    from app.tools.render_bench import measure_render_cost, report_render_cost

    click.echo(report_render_cost(measure_render_cost()))
    sizes = model_state_sizes(users=20_000, events=200_000, seed=11)
    click.echo(report_models(sizes, run_eval("longtail", 50_000, seed=3)))
    if not render_only:
        results, api_results = asyncio.run(run_bench(events, latency_rate, latency_seconds, partitions))
        click.echo(report(results))
        click.echo(report_api(api_results, API_RATE))
        click.echo(report_flows(asyncio.run(run_flow_bench())))
        click.echo(report_ingest(asyncio.run(run_ingest_bench(partitions))))


for command in (dead_letters, replay, erase, preview, soak, chaos):
    main.add_command(command)

if __name__ == "__main__":
    main()
