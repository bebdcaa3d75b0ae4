"""The Faust app: owns partition assignment, the RocksDB-backed `users` table and its
changelog recovery, and the web server; the batch hot path runs inside it."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, cast

import faust
from faust.tables.recovery import Recovery
from faust.types import TP, TransportT
from faust.web import Web

from app.api import ApiServices, add_routes
from app.settings import Settings
from app.worker_stats import LatencySamples, RecoQuality
from models.reco import ItemModel
from streams import metrics
from streams.core.clock import Clock
from streams.core.content import EmailRenderer
from streams.core.experiments import load_experiments
from streams.core.flow_definitions import FlowBook
from streams.core.jobs import JobContext
from streams.core.processing import BatchProcessor
from streams.core.routing import FleetView, owners_of
from streams.core.segments import SegmentBook
from streams.core.state import StatePolicy
from streams.core.state_cache import StateCache
from streams.kafka import rocksdb_memory
from streams.kafka.assignment import RememberingAssignor
from streams.kafka.clients import EventPublisher
from streams.kafka.committed_reads import CommittedReadsTableManager, CommittedReadsTransport
from streams.kafka.lookup import UserLookup
from streams.kafka.model_feed import MAX_SNAPSHOT_BYTES, SnapshotFeed, Trainer
from streams.kafka.outputs import OutputTopics
from streams.kafka.readiness import Readiness
from streams.kafka.store import UserStore
from streams.kafka.topics import ensure_topics, wait_for_broker
from streams.kafka.worker import BatchWorker, WorkerConfig
from streams.kafka.worker_metrics import Rebalances
from streams.serving.prediction_cache import PredictionCache

MIB = 1024 * 1024
EVERY_INTERFACE = ("0.0.0.0", "::", "")


class TidemailApp(faust.App):
    """A Faust app whose event processing is the `BatchWorker` rather than agents."""

    batch_worker: BatchWorker
    snapshot_feed: SnapshotFeed
    api_services: ApiServices
    _api_routes_added = False

    async def on_stop(self) -> None:
        # Faust's AppT does not declare the assignor class this app chose.
        cast(RememberingAssignor, self.assignor).remember()
        await super().on_stop()

    def on_init_dependencies(self) -> Any:
        return [*super().on_init_dependencies(), self.batch_worker, self.snapshot_feed]

    def _new_transport(self) -> TransportT:
        # The changelog is written in transactions: Faust reads committed records only.
        return CommittedReadsTransport(self.conf.broker_consumer, self)

    def on_webserver_init(self, web: Web) -> None:
        # `faust worker` initialises the web server twice (after autodiscovery, and on start);
        # a second set of routes and middlewares would shadow the first one's access table.
        if self._api_routes_added:
            return
        self._api_routes_added = True
        # Faust's base `Web` does not declare the aiohttp application its only driver has.
        add_routes(web.web_app, self.api_services)  # type: ignore[attr-defined]


def build_processor(settings: Settings, clock: Clock) -> BatchProcessor:
    """The pure batch logic, configured from settings (also used by tests to compute expectations)."""
    renderer = EmailRenderer(settings.templates_dir, defaults={"brand": settings.brand})
    segments = SegmentBook.load(settings.segments_file)
    experiments = load_experiments(settings.experiments_file, set(renderer.versions))
    return BatchProcessor(
        policy=StatePolicy(
            dedupe_window=settings.dedupe_window,
            interest_half_life_days=settings.interest_half_life_days,
            daily_history_days=settings.daily_history_days,
            recent_purchases_kept=settings.recent_purchases_kept,
        ),
        renderer=renderer,
        job_context=JobContext(
            brand=settings.brand,
            shop_url=settings.shop_url,
            postal_address=settings.company_postal_address,
            unsubscribe_base_url=settings.unsubscribe_base_url,
            unsubscribe_secret=settings.unsubscribe_secret.reveal().encode(),
            interest_half_life_days=settings.interest_half_life_days,
        ),
        segments=segments,
        max_event_bytes=settings.max_event_bytes,
        clock_ms=clock.now_ms,
        reco_weights=settings.reco_weights,
        item_model=ItemModel.empty(),
        experiments=experiments,
        flows=FlowBook.load(settings.flows_file, set(renderer.versions), set(experiments), set(segments.by_name)),
        governance=settings.governance,
        partitions=settings.partitions,
    )


async def ensure_deployment_topics(settings: Settings) -> None:
    """Every topic a worker reads or writes, created if missing and checked if present."""
    bootstrap, replication = settings.kafka_bootstrap, settings.replication_factor
    await wait_for_broker(bootstrap, settings.kafka_startup_wait_s)
    await ensure_topics(bootstrap, settings.partitions, replication, settings.hot_path_topics)
    # Delivery outcomes, keyed by user like the jobs they report on.
    await ensure_topics(bootstrap, settings.partitions, replication, [settings.deliveries_topic])
    # One partition each: interactions elect one trainer and keep their order; snapshots are one log.
    await ensure_topics(bootstrap, 1, replication, [settings.interactions_topic])
    snapshot_configs = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_SNAPSHOT_BYTES)}
    await ensure_topics(bootstrap, 1, replication, [settings.item_model_topic], snapshot_configs)
    await ensure_topics(bootstrap, 1, replication, [settings.catalog_topic], {"cleanup.policy": "compact"})


def create_trainer(settings: Settings) -> Trainer:
    return Trainer(
        bootstrap=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-trainer",
        interactions_topic=settings.interactions_topic,
        item_model_topic=settings.item_model_topic,
        catalog_topic=settings.catalog_topic,
        half_life_days=settings.interest_half_life_days,
        catalog_capacity=settings.reco_catalog_capacity,
        snapshot_interval_s=settings.reco_snapshot_interval_s,
    )


def create_app(settings: Settings) -> TidemailApp:
    """Build the app and everything it owns; connects to nothing until started."""
    app = _faust_app(settings)
    table = app.Table(
        "users",
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        # Scheme and table name: Faust takes a URL with neither host nor path for "no store given".
        store=f"{rocksdb_memory.STORE_SCHEME}:users",
        options=rocksdb_options(settings),
    )
    store = UserStore(table, settings.partitions)
    clock = Clock()
    processor = build_processor(settings, clock)
    worker = create_worker(settings, store, processor, clock)
    app.batch_worker = worker
    app.snapshot_feed = SnapshotFeed(
        bootstrap=settings.kafka_bootstrap, item_model_topic=settings.item_model_topic, processor=processor
    )
    prediction_cache = PredictionCache(settings.redis_url, settings.prediction_cache_ttl_s, settings.app_id)
    worker.on_users_changed.append(prediction_cache.forget)
    latency, reco_quality = LatencySamples(), RecoQuality()
    worker.on_consumed.append(latency.consumed)
    worker.on_batch.append(reco_quality.observe)
    app.api_services = ApiServices(
        settings=settings,
        clock=clock,
        processor=processor,
        segments=processor.segments,
        ownership=worker.ownership,
        users=UserLookup(store, worker.ownership),
        segment_sizes=worker.segment_sizes,
        snapshots=app.snapshot_feed,
        prediction_cache=prediction_cache,
        events=EventPublisher(worker.clients, settings.events_topic),
        latency=latency,
        reco_quality=reco_quality,
        readiness=_readiness(settings, app, worker),
        fleet=_fleet(app, store),
    )
    _follow_rebalances(app, worker, store)
    return app


def _readiness(settings: Settings, app: TidemailApp, worker: BatchWorker) -> Readiness:
    """`GET /ready`, and the recovery progress and readiness gauges, read when scraped."""

    def recovery_done() -> bool:
        return not (app.rebalancing or app.in_recovery)

    readiness = Readiness(
        ownership=worker.ownership,
        lag=worker.lag,
        recovery_done=recovery_done,
        max_lag_records=settings.ready_max_lag_records,
    )
    metrics.READY.set_function(lambda: float(not readiness.reasons()))
    metrics.RECOVERY_DONE.set_function(lambda: float(recovery_done()))

    def recovery() -> Recovery:
        # Faust's TableManagerT does not declare the `recovery` its only implementation has.
        return app.tables.recovery  # type: ignore[attr-defined, no-any-return]

    metrics.RECOVERY_REMAINING.labels("active").set_function(lambda: recovery().active_remaining_total())
    return readiness


def _fleet(app: TidemailApp, store: UserStore) -> Callable[[], FleetView]:
    """Each worker's URL and the `users` partitions it owns, as the group leader last assigned
    them (every member receives the whole layout with its own assignment)."""

    def view() -> FleetView:
        # Faust's PartitionAssignorT does not declare the layout its only implementation keeps.
        layout = app.assignor.changelog_distribution  # type: ignore[attr-defined]
        return FleetView(str(app.conf.canonical_url), owners_of(layout, store.changelog_topic), frozenset(layout))

    return view


def canonical_url(settings: Settings) -> str:
    """Where the other workers send requests about this worker's users: TIDEMAIL_CANONICAL_URL,
    else the host the API listens on, or this machine's name when it listens on every interface."""
    if settings.canonical_url:
        return settings.canonical_url
    host = socket.gethostname() if settings.web_host in EVERY_INTERFACE else settings.web_host
    return f"http://{host}:{settings.web_port}"


def _faust_app(settings: Settings) -> TidemailApp:
    return TidemailApp(
        settings.app_id,
        broker=settings.kafka_url,
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        # Faust listens on web_bind, all interfaces by default; web_host only names the URL.
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=canonical_url(settings),
        web_in_thread=False,
        # Faust's own pages off: /table serves table values (every user's state), /router the
        # cluster's layout, / and /graph its internals; the API serves what is meant to be read.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        producer_acks=-1,
        TableManager=CommittedReadsTableManager,
        # No standby replicas: Faust keeps them with its per-record changelog loop, which can
        # leave holes under an offset persisted past them (streams/kafka/changelog_restore.py),
        # and a standby taken over as active would carry them into the hot path. A takeover
        # restores what its local copy lacks with a consumer of its own instead.
        table_standby_replicas=0,
        PartitionAssignor=RememberingAssignor,
        # A worker that dies without leaving the group holds its partitions this long.
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_session_timeout_s / 5,
    )


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """The `users` table's RocksDB options: one block cache and one memtable budget for all
    its partition databases (see streams/kafka/rocksdb_memory.py)."""
    rocksdb_memory.register()
    return {
        "block_cache_size": settings.rocksdb_block_cache_mb * MIB,
        "memtable_budget_size": settings.rocksdb_memtables_mb * MIB,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * MIB,
        "max_write_buffer_number": 3,
        "max_open_files": 1024,
    }


def create_worker(settings: Settings, store: UserStore, processor: BatchProcessor, clock: Clock) -> BatchWorker:
    config = WorkerConfig(
        bootstrap=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-hot-path",
        topics=OutputTopics(
            events=settings.events_topic,
            jobs=settings.jobs_topic,
            segment_changes=settings.segment_changes_topic,
            dead_letters=settings.dead_letter_topic,
            erasures=settings.erasures_topic,
        ),
        interactions_topic=settings.interactions_topic,
        batch_max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        timer_interval_ms=settings.timer_interval_ms,
        timer_batch_users=settings.timer_batch_users,
    )
    cache = StateCache(settings.state_cache_users)
    return BatchWorker(config=config, store=store, processor=processor, cache=cache, clock=clock)


def _follow_rebalances(app: TidemailApp, worker: BatchWorker, store: UserStore) -> None:
    """The worker processes exactly the partitions of the `users` table Faust assigns this process."""
    rebalances = Rebalances()

    async def fence(tps: set[TP]) -> None:
        await worker.fence({tp.partition for tp in tps if tp.topic == store.changelog_topic})

    # Faust's TableManagerT does not declare the attributes of the manager this app chose.
    cast(CommittedReadsTableManager, app.tables).fence_writers = fence

    # mode types signal receivers so that no coroutine function matches; the ignores are for that.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def release_partitions(sender: Any, *args: Any, **kwargs: Any) -> None:
        rebalances.started()
        await worker.release()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def take_partitions(sender: Any, *args: Any, **kwargs: Any) -> None:
        changelog = store.changelog_topic
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}
        await worker.assign(owned)
        rebalances.completed()
