"""Prometheus metrics for the worker. Hot-path counters are bumped once per batch, not per event."""

from __future__ import annotations

import bisect
import gc
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily

EVENTS_CONSUMED = Counter("tidemail_events_consumed_total", "Records read from the events topic.")
EVENTS_APPLIED = Counter("tidemail_events_applied_total", "Events applied to user state.", ["type"])
EVENTS_SKIPPED = Counter(
    "tidemail_events_skipped_total",
    "Events not applied: duplicates by event_id, or replays below a user's offset.",
    ["reason"],
)
DEAD_LETTERS = Counter("tidemail_dead_letters_total", "Records sent to the dead-letter topic.", ["kind"])
EVENTS_REROUTED = Counter(
    "tidemail_events_rerouted_total",
    "Events that arrived on a partition other than their key's murmur2 partition, forwarded to it.",
    ["topic"],
)
JOBS_EMITTED = Counter("tidemail_jobs_emitted_total", "Email jobs published.", ["flow"])
GOVERNANCE_DECISIONS = Counter(
    "tidemail_governance_decisions_total",
    "Decisions on the emails flows asked for: allowed, unsubscribed, hard_bounced, no_address, capped_24h, "
    "capped_7d, held_out (experiment holdout), delayed_quiet_hours (also allowed); and stale_trigger, the flow runs "
    "that a trigger older than TIDEMAIL_MAX_TRIGGER_AGE did not start or move on.",
    ["decision"],
)
FLOW_TRANSITIONS = Counter(
    "tidemail_flow_transitions_total",
    "Flow runs entered, completed, ended by a goal, superseded, refused re-entry, and similar.",
    ["flow", "transition"],
)
EXPERIMENT_OUTCOMES = Counter(
    "tidemail_experiment_outcomes_total",
    "Per experiment and variant (or holdout): sends, and the opens, clicks and purchases attributed to them.",
    ["experiment", "variant", "outcome"],
)
BATCH_RECORDS = Histogram(
    "tidemail_batch_size_records",
    "Records per processed batch of events.",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "tidemail_batch_duration_seconds",
    "Wall time to process and persist one batch of events or due timers.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TRANSACTION_SECONDS = Histogram(
    "tidemail_transaction_duration_seconds",
    "From beginning an event partition's transaction to the broker acknowledging its commit; "
    "every event of a batch waits for the slowest of its partitions'.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


class BatchHistogram:
    """A histogram fed a whole batch of observations at once. prometheus_client's
    `Histogram.observe` takes a lock and walks the buckets per call (~2 us): per event,
    a few percent of the hot path."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last for +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts = [0] * len(self._counts)
        total = 0.0
        bounds = self._bounds
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1  # `le` buckets: value <= bound
            total += value
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative = list(itertools.accumulate(counts))
        labels = [*(str(float(bound)) for bound in self._bounds), "+Inf"]
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], buckets=list(zip(labels, cumulative, strict=True)), sum_value=total)
        yield family


EVENT_LATENCY = BatchHistogram(
    "tidemail_event_latency_seconds",
    "From the event's Kafka timestamp to its state being durable.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "tidemail_consumer_lag_records",
    "Records of each partition this process consumes not yet read: the broker's end offset minus the position.",
    ["topic", "partition"],
)
OWNED_PARTITIONS = Gauge("tidemail_owned_partitions", "Event partitions this worker processes.")
PARTITIONS_FENCED = Counter(
    "tidemail_partitions_fenced_total",
    "Event partitions this worker stopped processing because another worker's producer fenced its own.",
)
REBALANCES = Counter("tidemail_rebalances_total", "Consumer group rebalances this worker went through.")
GC_PAUSE_SECONDS = Histogram(
    "tidemail_gc_pause_seconds",
    "Python's garbage collections, by generation: each stops every task of the process, the hot path's too.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REBALANCE_SECONDS = Histogram(
    "tidemail_rebalance_duration_seconds",
    "From the revocation that starts a rebalance to the hot path owning its partitions again, recovery included.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
RECOVERY_REMAINING = Gauge(
    "tidemail_recovery_remaining_records",
    "Changelog records the worker's table recovery has still to read (replica: active; no standbys are kept).",
    ["replica"],
)
RECOVERY_DONE = Gauge("tidemail_recovery_done", "1 when no rebalance or table recovery is under way, else 0.")
READY = Gauge(
    "tidemail_ready",
    "1 when GET /ready answers 200: partitions owned, recovery done, lag under TIDEMAIL_READY_MAX_LAG_RECORDS.",
)
REDIS_ERRORS = Counter("tidemail_redis_errors_total", "Redis calls that failed, by client.", ["client"])
CACHED_USERS = Gauge("tidemail_state_cache_users", "User states held in the in-memory cache.")
BATCH_FAILURES = Counter("tidemail_batch_failures_total", "Batches that failed to become durable and were retried.")
SEGMENT_SIZE = Gauge(
    "tidemail_segment_members", "Members of each segment in the partitions this worker owns.", ["segment"]
)
SEGMENT_CHANGES = Counter(
    "tidemail_segment_changes_total", "Segment entries and exits published.", ["segment", "change"]
)
TIMER_USERS = Counter("tidemail_timer_users_total", "Users re-evaluated because a time condition came due.")
TIMER_LATENESS = Histogram(
    "tidemail_timer_lateness_seconds",
    "How long after its due instant the latest timer of a clock batch fired.",
    # Up to half an hour: a backlog of due timers (a restart, a burst) must read as a figure, not "over a minute".
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)

UNSUBSCRIBE_REQUESTS = Counter(
    "tidemail_unsubscribe_requests_total", "Unsubscribe link visits, by outcome (accepted or refused)", ["outcome"]
)
RECO_PREDICTIONS = Counter(
    "tidemail_reco_predictions_total", "Clicks and purchases predicted before learning (prequential)."
)
RECO_HITS = Counter(
    "tidemail_reco_hits_total",
    "Predicted clicks and purchases whose product was in the top 10, by recommender (model or popular).",
    ["recommender"],
)
TRAINER_BATCHES = Counter(
    "tidemail_trainer_batches_total",
    "Worker batches (interactions, engagement, examples, rewards) the trainer learned.",
)
SNAPSHOTS_PUBLISHED = Counter("tidemail_item_model_snapshots_total", "Item-model snapshots this worker published.")
ITEM_MODEL_ITEMS = Gauge("tidemail_item_model_items", "Items in the item-model snapshot this worker ranks with.")
PREDICTION_CACHE = Counter(
    "tidemail_prediction_cache_total",
    "Prediction API cache lookups by outcome: hit, miss, or unavailable (Redis down; answered from the tables).",
    ["outcome"],
)

# Served by `tidemail deliver` on TIDEMAIL_DELIVERER_METRICS_PORT.
DELIVERIES = Counter(
    "tidemail_deliveries_total",
    "Email jobs finished by the deliverer, by outcome (sent, bounced, failed, unconfirmed, duplicate, invalid, "
    "erased, withdrawn).",
    ["outcome"],
)
DELIVERY_RETRIES = Counter(
    "tidemail_delivery_retries_total", "SMTP attempts that failed transiently and were scheduled again."
)
DELIVERY_DELAY = Histogram(
    "tidemail_delivery_delay_seconds",
    "From a job's send_at to the SMTP server accepting it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DELIVERY_PENDING = Gauge("tidemail_delivery_pending_jobs", "Jobs read and not yet finished (most wait for send_at).")
DELIVERY_CLAIMS_UNAVAILABLE = Counter(
    "tidemail_delivery_claims_unavailable_total",
    "Redis calls for delivery claims that failed or were skipped after one; the deliveries topic decides alone.",
)

# The worker's HTTP API.
API_REFUSALS = Counter(
    "tidemail_api_refusals_total",
    "API requests refused: no_token or bad_token (401), not_admin (403), bad_request (400: a malformed input).",
    ["reason"],
)
API_FORWARDS = Counter(
    "tidemail_api_forwards_total",
    "Requests about a user of another worker's partition: answered (by the owner), misdirected (the owner no "
    "longer had it, 421), unreachable (no answer in time), unavailable (503 to the caller after one retry).",
    ["outcome"],
)
API_FORWARD_SECONDS = Histogram(
    "tidemail_api_forward_duration_seconds",
    "From sending a request on to the owner of the user's partition to its answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)

# Recommender quality on products new to the user (a fixed sample of first touches; see
# streams/core/event_steps.py): predictions, and hits of each recommender's top 10.
RECO_NEW_PREDICTIONS = Counter(
    "tidemail_reco_new_predictions_total",
    "First touches of products new to the user, predicted before learning (prequential).",
)
RECO_NEW_HITS = Counter(
    "tidemail_reco_new_hits_total",
    "Predicted first touches whose product was in the top 10, by recommender (model, popular or item_to_item).",
    ["recommender"],
)

# Served by `tidemail ingest` (Segment's HTTP tracking API) on TIDEMAIL_INGEST_PORT.
INGEST_REQUESTS = Counter(
    "tidemail_ingest_requests_total",
    "Requests to the ingestion API by route (track, identify, page, batch) and HTTP status.",
    ["route", "status"],
)
INGEST_EVENTS = Counter(
    "tidemail_ingest_events_total",
    "Calls received by outcome: accepted (acknowledged by the broker), invalid, too_large, failed (broker).",
    ["outcome"],
)
INGEST_REQUEST_SECONDS = Histogram(
    "tidemail_ingest_request_duration_seconds",
    "From a request's arrival to its answer, the broker's acknowledgement included.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

# The deliverer's ledger: what the deliveries topic says was claimed and finished.
DELIVERY_LEDGER_RECORDS_READ = Counter(
    "tidemail_delivery_ledger_records_read_total",
    "Deliveries-topic records read back into the ledger when the deliverer was given partitions.",
)
DELIVERY_LEDGER_REBUILD_SECONDS = Histogram(
    "tidemail_delivery_ledger_rebuild_seconds",
    "Time to read the deliveries topic back for newly assigned partitions, before any of their jobs is taken.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DELIVERY_LEDGER_JOBS = Gauge(
    "tidemail_delivery_ledger_jobs",
    "Jobs the ledger remembers as claimed, released or finished, for the partitions this deliverer owns.",
)

DELIVERY_OUTCOMES_FORGOTTEN = Counter(
    "tidemail_delivery_outcomes_forgotten_total",
    "Job outcomes deleted from Redis because their user was erased.",
)


def observe_gc_pauses() -> None:
    """Time every garbage collection of this process into GC_PAUSE_SECONDS."""
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            GC_PAUSE_SECONDS.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

    gc.callbacks.append(timed)
