"""Exporting what each durable batch did to Prometheus: one update per label, not per event."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from streams import metrics
from streams.core.batch import BatchCounts, BatchResult, Outputs, Reroute
from streams.kafka.segment_sizes import SegmentMoves

log = logging.getLogger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


def export_batch(result: BatchResult, seconds: float, cached_users: int) -> None:
    """A batch of events or timers, durable after `seconds`."""
    _export_counts(result.counts)
    experiment_outcomes = Counter(
        (record.experiment, record.variant, record.outcome) for record in result.training.bandit_records
    )
    for (experiment, variant, outcome), n in experiment_outcomes.items():
        metrics.EXPERIMENT_OUTCOMES.labels(experiment, variant, outcome).inc(n)
    _export_outputs(result.outputs)
    _export_segment_changes(result.changes.segment_moves)
    metrics.BATCH_SECONDS.observe(seconds)
    metrics.CACHED_USERS.set(cached_users)
    quality = result.counts.reco_quality
    if quality:
        metrics.RECO_PREDICTIONS.inc(quality["predictions"])
        for recommender in ("model", "popular"):
            metrics.RECO_HITS.labels(recommender).inc(quality[recommender])
        metrics.RECO_NEW_PREDICTIONS.inc(quality["new_predictions"])
        for recommender in ("model", "popular", "item_to_item"):
            metrics.RECO_NEW_HITS.labels(recommender).inc(quality[f"new_{recommender}"])


def _export_counts(counts: BatchCounts) -> None:
    for event_type, n in counts.applied_by_type.items():
        metrics.EVENTS_APPLIED.labels(event_type).inc(n)
    for reason, n in counts.skipped.items():
        metrics.EVENTS_SKIPPED.labels(reason).inc(n)
    for decision, n in counts.governance.items():
        metrics.GOVERNANCE_DECISIONS.labels(decision).inc(n)
    for transition, n in counts.flow_transitions.items():
        flow, what = transition.split(":", 1)
        metrics.FLOW_TRANSITIONS.labels(flow, what).inc(n)


def _export_outputs(outputs: Outputs) -> None:
    for dead in outputs.dead_letters:
        metrics.DEAD_LETTERS.labels(dead.kind).inc()
        log.warning("dead-lettered p%d@%d (%s): %s", dead.record.partition, dead.record.offset, dead.kind, dead.reason)
    for job in outputs.jobs:
        metrics.JOBS_EMITTED.labels(job["flow"]).inc()


def _export_segment_changes(moves: SegmentMoves) -> None:
    # Summed over partitions first: a labelled child lookup costs microseconds.
    changes: Counter[tuple[str, str]] = Counter()
    for (_, change), counts in moves.items():
        for segment, n in counts.items():
            changes[(segment, change)] += n
    for (segment, change), n in changes.items():
        metrics.SEGMENT_CHANGES.labels(segment, change).inc(n)


class MisroutedEvents:
    """Counts events forwarded to their user's partition and says, at most once a minute, how to
    stop producing them: a misplaced event costs a second produce and a second read."""

    def __init__(self, topic: str, warn_every_s: float = 60.0) -> None:
        self._counter = metrics.EVENTS_REROUTED.labels(topic)
        self._topic = topic
        self._warn_every_s = warn_every_s
        self._since_warning = 0
        self._warned_at = float("-inf")

    def note(self, reroutes: Sequence[Reroute]) -> None:
        if not reroutes:
            return
        self._counter.inc(len(reroutes))
        self._since_warning += len(reroutes)
        now = time.monotonic()
        if now - self._warned_at < self._warn_every_s:
            return
        first = reroutes[0]
        log.warning(
            "%d event(s) arrived on a partition of %s other than their key's murmur2 partition (e.g. user %r on "
            "%d, belongs on %d) and were forwarded there. Their producer partitions keys differently from the "
            "Java client: set partitioner=murmur2_random in librdkafka clients (kcat -X partitioner=murmur2_random, "
            "confluent-kafka {'partitioner': 'murmur2_random'}).",
            self._since_warning,
            self._topic,
            first.user_id,
            first.record.partition,
            first.partition,
        )
        self._since_warning = 0
        self._warned_at = now


def latencies_ms(fetched: Fetched) -> list[float]:
    """From each consumed event's Kafka timestamp to now, when its batch is durable."""
    now_ms = time.time() * 1000
    return [max(0.0, now_ms - record.timestamp) for records in fetched.values() for record in records]


def export_consumption(latencies_ms: Sequence[float]) -> None:
    """Events consumed by a durable batch, and their latencies (lag is `ConsumerLag`'s)."""
    count = len(latencies_ms)
    metrics.EVENTS_CONSUMED.inc(count)
    metrics.BATCH_RECORDS.observe(count)
    metrics.EVENT_LATENCY.observe_many(latency / 1000 for latency in latencies_ms)


class Rebalances:
    """Counts the worker's rebalances and times each, from the revocation that starts it to
    the hot path owning its partitions again: how long the worker processed nothing."""

    def __init__(self) -> None:
        self._started: float | None = None

    def started(self) -> None:
        self._started = time.monotonic()

    def completed(self) -> None:
        metrics.REBALANCES.inc()
        if self._started is not None:
            metrics.REBALANCE_SECONDS.observe(time.monotonic() - self._started)
            self._started = None
