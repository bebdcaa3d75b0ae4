"""The worker's hot path: batch consumption of the events topic inside a Faust worker.

Faust decides which partitions this worker owns (its group assignment of the
`users` table changelog), recovers the table, and runs the web server and CLI.
Events themselves bypass Faust's per-message stream machinery: a plain aiokafka
consumer is assigned exactly the owned partitions and fetches them in batches.

Durability protocol for one batch, in this order:
1. jobs, segment changes and dead letters are produced and acknowledged;
2. changed user states, timer index moves and the partition checkpoint (last
   input offset, output topics' end offsets) are produced to the changelog and
   acknowledged;
3. the same writes go to local RocksDB with the changelog offset they reflect.
A crash anywhere replays from the last durable checkpoint. Each user's state
carries the offset of the last event applied to it, so replayed events are
skipped for users whose state already reflects them; outputs a lost batch had
already published are recognised by id and not published again (streams/outputs.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from mode import Service

from streams import metrics
from streams.core.batch import BatchResult, InputRecord
from streams.core.clock import Clock
from streams.core.processing import BatchProcessor
from streams.core.state import UserState, decode_state, encode_state
from streams.core.state_cache import StateCache
from streams.kafka.outputs import OutputPublisher, OutputTopics
from streams.kafka.produce import NO_HEADERS, Record, send_grouped
from streams.kafka.store import CHECKPOINT_KEY, SEGMENT_SIZES_KEY, Checkpoint, UserStore, timer_key

log = logging.getLogger(__name__)


RETRY_BACKOFF_SECONDS = (0.5, 1, 2, 5, 10)
# Kafka's default message.max.bytes, less room for the batch header.
MAX_RECORD_BYTES = 1_000_000


class HotPath(Service):
    """Consumes owned event partitions in batches and makes each batch durable."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        events_topic: str,
        jobs_topic: str,
        dead_letter_topic: str,
        segment_changes_topic: str,
        interactions_topic: str,
        store: UserStore,
        processor: BatchProcessor,
        cache: StateCache,
        batch_max_records: int,
        batch_timeout_ms: int,
        clock: Clock,
        timer_interval_ms: int,
        timer_batch_users: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._events_topic = events_topic
        self._jobs_topic = jobs_topic
        self._dead_letter_topic = dead_letter_topic
        self._segment_changes_topic = segment_changes_topic
        self._interactions_topic = interactions_topic
        self.reco_quality: Counter[str] = Counter()
        # Called with the user ids of each durable batch (the prediction cache drops them).
        self.on_users_changed: list[Callable[[list[str]], Awaitable[None]]] = []
        self._timer_interval_s = timer_interval_ms / 1000
        self._timer_batch_users = timer_batch_users
        self.segment_sizes: dict[int, Counter[str]] = {}
        self._checkpoints: dict[int, Checkpoint] = {}
        self._topics = OutputTopics(events_topic, jobs_topic, segment_changes_topic, dead_letter_topic)
        self._store = store
        self._processor = processor
        self._cache = cache
        self._batch_max_records = batch_max_records
        self._batch_timeout_ms = batch_timeout_ms
        self._clock = clock
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._consumer: AIOKafkaConsumer
        self._producer: AIOKafkaProducer
        # Held while a batch is in flight, so a rebalance waits for it to become durable.
        self._lock = asyncio.Lock()
        self._owned: set[int] = set()
        self._clients_started = asyncio.Event()
        self._failures_in_a_row = 0
        self.processed = 0
        self.latencies_ms: deque[float] = deque(maxlen=200_000)

    @property
    def owned_partitions(self) -> set[int]:
        return set(self._owned)

    async def on_start(self) -> None:
        # The worker's log setup leaves aiokafka at DEBUG, and the producer builds a
        # debug record for every message sent: 6% of the hot path's time.
        logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
        # Created here, not in __init__: aiokafka clients bind to the running loop.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=MAX_RECORD_BYTES * 4,
        )
        self._publisher = OutputPublisher(self._producer, self._bootstrap, self._topics, MAX_RECORD_BYTES)
        await self._producer.start()
        await self._consumer.start()
        self._clients_started.set()

    async def on_stop(self) -> None:
        # A worker whose start failed earlier (its web port taken, say) stops this service
        # too, and there are no clients to close.
        if not self._clients_started.is_set():
            return
        async with self._lock:
            await self._consumer.stop()
            await self._producer.stop()

    async def submit_event(self, user_id: str, value: bytes) -> None:
        """Publish an event the worker itself observed (an unsubscribe click) to the events
        topic, keyed like every producer keys them, so it is applied in the user's order."""
        await self._clients_started.wait()
        await self._producer.send_and_wait(self._events_topic, value, key=user_id.encode())

    async def assign(self, partitions: set[int]) -> None:
        """Take over exactly `partitions` (after Faust recovered their table state)."""
        await self._clients_started.wait()
        async with self._lock:
            dropped = self._owned - partitions
            self._cache.drop_partitions(dropped)
            self._publisher.forget(dropped)
            self._consumer.assign([TopicPartition(self._events_topic, p) for p in sorted(partitions)])
            self._checkpoints = {p: self._store.checkpoint(p) for p in partitions}
            await self._rewind_until_done()
            self._owned = set(partitions)
            self.segment_sizes = {p: self._load_sizes(p) for p in partitions}
            self._export_sizes()
            metrics.OWNED_PARTITIONS.set(len(partitions))
            log.info("hot path owns event partitions %s", sorted(partitions))

    async def release(self) -> None:
        """Give up every partition, after the batch in flight (if any) is durable."""
        if not self._clients_started.is_set():
            return
        async with self._lock:
            self._consumer.assign([])
            self._cache.drop_partitions(self._owned)
            self._publisher.forget(self._owned)
            self._owned = set()
            self.segment_sizes = {}
            self._export_sizes()
            metrics.OWNED_PARTITIONS.set(0)

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            if not self._owned:
                await self.sleep(0.05)
                continue
            fetched = await self._consumer.getmany(
                timeout_ms=self._batch_timeout_ms, max_records=self._batch_max_records
            )
            if not fetched:
                continue
            async with self._lock:
                owned_now = {tp: recs for tp, recs in fetched.items() if tp.partition in self._owned}
                if not owned_now or self.should_stop:
                    continue
                try:
                    await self._handle(owned_now)
                    self._failures_in_a_row = 0
                except Exception:
                    await self._recover_from_failed_batch()

    @Service.task
    async def _fire_due_timers(self) -> None:
        """Re-evaluate users whose conditions can flip with no new event (time passing)."""
        while not self.should_stop:
            await self.sleep(self._timer_interval_s)
            if not self._owned:
                continue
            async with self._lock:
                if self.should_stop:  # on_stop closed the clients while we waited for the lock
                    return
                now_ms = self._clock.now_ms()
                # Every partition's due entries in one batch: one round trip to the broker,
                # not one per partition, keeps timers within a tick of their instant.
                due = {
                    partition: entries
                    for partition in sorted(self._owned)
                    if (entries := self._store.due_timers(partition, now_ms, self._timer_batch_users))
                }
                if not due:
                    continue
                started = time.perf_counter()
                try:
                    result = self._processor.on_clock(due, self._load)
                    await self._make_durable(result)
                except Exception:
                    # The timers stay due; outputs it may have published are read back
                    # by the rewind, so the retry does not publish them twice.
                    await self._recover_from_failed_batch()
                    continue
                self._failures_in_a_row = 0
                metrics.TIMER_USERS.inc(sum(len(entries) for entries in due.values()))
                metrics.TIMER_LATENESS.observe(result.counts.timer_lateness_ms / 1000)
                self._record_outputs(result, time.perf_counter() - started)

    async def _recover_from_failed_batch(self) -> None:
        # Usually the broker is unreachable. Nothing of the batch counts until it is
        # durable, so rewinding to the checkpoints and trying again loses nothing.
        delay = RETRY_BACKOFF_SECONDS[min(self._failures_in_a_row, len(RETRY_BACKOFF_SECONDS) - 1)]
        self._failures_in_a_row += 1
        metrics.BATCH_FAILURES.inc()
        log.exception(
            "batch failed (%d in a row); rewinding to checkpoints, retry in %ss", self._failures_in_a_row, delay
        )
        await self.sleep(delay)
        try:
            await self._rewind_to_checkpoints()
        except Exception:
            log.exception("rewinding failed; the next batch retries it")

    async def _rewind_until_done(self) -> None:
        # Right after a broker restart, partitions can be leaderless for a while and reading
        # the output topics back fails; processing must not start without that read.
        for attempt, delay in enumerate(RETRY_BACKOFF_SECONDS * 3):
            try:
                await self._rewind_to_checkpoints()
                return
            except Exception:
                log.exception(
                    "reading checkpoints and recent outputs failed (attempt %d); retry in %ss", attempt + 1, delay
                )
                await self.sleep(delay)
        await self._rewind_to_checkpoints()

    async def _rewind_to_checkpoints(self) -> None:
        for partition, checkpoint in self._checkpoints.items():
            tp = TopicPartition(self._events_topic, partition)
            if checkpoint.input_offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, checkpoint.input_offset + 1)
            await self._publisher.recall(partition, checkpoint.output_ends)

    async def _handle(self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        started = time.perf_counter()
        batch = {
            tp.partition: [InputRecord(tp.partition, r.offset, r.key, r.value, r.timestamp) for r in records]
            for tp, records in fetched.items()
        }
        result = self._processor.process(batch, self._load)
        await self._make_durable(result)
        # Counted before the commit, so whoever sees the offsets committed sees the counts.
        self._record_outputs(result, time.perf_counter() - started)
        await self._consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
        changed_users = [user for states in result.changes.states.values() for user in states]
        for listener in self.on_users_changed:
            await listener(changed_users)
        self._record_consumption(fetched)

    async def _make_durable(self, result: BatchResult) -> None:
        output_ends, _ = await asyncio.gather(self._publisher.publish(result), self._publish_training(result))
        checkpoints = {
            partition: self._checkpoints.get(partition, Checkpoint(None, {})).advanced(
                result.changes.last_offsets.get(partition), output_ends.get(partition, {})
            )
            for partition in {*result.changes.last_offsets, *output_ends}
        }
        deltas: dict[int, Counter[str]] = {}
        for (partition, change), counts in result.changes.segment_moves.items():
            delta = deltas.setdefault(partition, Counter())
            if change == "entered":
                delta.update(counts)
            else:
                delta.subtract(counts)
        sizes = {partition: self._sizes_after(partition, moved) for partition, moved in deltas.items()}
        changelog = self._changelog_items(result, checkpoints, sizes)
        changelog_offsets = await self._publish_changelog(changelog)
        for partition, items in changelog.items():
            self._store.write(partition, items, changelog_offsets.get(partition))
        # In-memory bookkeeping changes only once the batch is durable, so a failed batch
        # that is retried does not count its segment changes twice.
        self._checkpoints.update(checkpoints)
        if sizes:
            self.segment_sizes.update(sizes)
            self._export_sizes()
        for partition, states in result.changes.states.items():
            for user_id, state in states.items():
                self._cache.put(partition, user_id, state)

    async def _publish_training(self, result: BatchResult) -> None:
        # At least once, in input order: a replayed batch may teach the trainer an
        # interaction twice, which moves a model about as much as one more view.
        if result.training:
            topic = self._interactions_topic
            chunks: list[Record] = [(None, chunk.encode(), NO_HEADERS) for chunk in result.training.split()]
            await send_grouped(self._producer, {(topic, 0): chunks})

    def _load(self, partition: int, user_id: str) -> UserState | None:
        state = self._cache.get(partition, user_id)
        if state is not None:
            return state
        raw = self._store.get(partition, user_id.encode())
        return decode_state(raw) if raw is not None else None

    def _changelog_items(
        self, result: BatchResult, checkpoints: dict[int, Checkpoint], sizes: dict[int, Counter[str]]
    ) -> dict[int, dict[bytes, bytes | None]]:
        """Per partition, every key this batch changes: states, timer index moves, sizes, checkpoint."""
        items: dict[int, dict[bytes, bytes | None]] = {}
        for partition, states in result.changes.states.items():
            items[partition] = {user_id.encode(): encode_state(state) for user_id, state in states.items()}
        for partition, entries in result.changes.timer_removals.items():
            part = items.setdefault(partition, {})
            for due_ms, user_id in entries:
                part[timer_key(due_ms, user_id)] = None
        for partition, entries in result.changes.timer_additions.items():
            part = items.setdefault(partition, {})
            for due_ms, user_id in entries:
                part[timer_key(due_ms, user_id)] = b""
        for partition, partition_sizes in sizes.items():
            items.setdefault(partition, {})[SEGMENT_SIZES_KEY] = orjson.dumps(dict(partition_sizes))
        for partition, checkpoint in checkpoints.items():
            items.setdefault(partition, {})[CHECKPOINT_KEY] = checkpoint.encode()
        return items

    async def _publish_changelog(self, changelog: dict[int, dict[bytes, bytes | None]]) -> dict[int, int]:
        """Send every partition's changes to the changelog; return the last offset written per partition."""
        topic = self._store.changelog_topic
        grouped = {
            (topic, partition): [(key, value, NO_HEADERS) for key, value in items.items()]
            for partition, items in changelog.items()
        }
        ends = await send_grouped(self._producer, grouped)
        return {partition: end - 1 for (_, partition), end in ends.items()}

    def _sizes_after(self, partition: int, deltas: Counter[str]) -> Counter[str]:
        sizes = Counter(self.segment_sizes.get(partition, Counter()))
        sizes.update(deltas)
        return sizes

    def _load_sizes(self, partition: int) -> Counter[str]:
        raw = self._store.get(partition, SEGMENT_SIZES_KEY)
        return Counter(orjson.loads(raw)) if raw else Counter()

    def segment_totals(self) -> Counter[str]:
        """Members of each segment across the partitions this worker owns."""
        totals: Counter[str] = Counter()
        for sizes in self.segment_sizes.values():
            totals.update(sizes)
        return totals

    def _export_sizes(self) -> None:
        for name, size in self.segment_totals().items():
            metrics.SEGMENT_SIZE.labels(name).set(size)

    def _record_outputs(self, result: BatchResult, seconds: float) -> None:
        for event_type, n in result.counts.applied_by_type.items():
            metrics.EVENTS_APPLIED.labels(event_type).inc(n)
        for reason, n in result.counts.skipped.items():
            metrics.EVENTS_SKIPPED.labels(reason).inc(n)
        for decision, n in result.counts.governance.items():
            metrics.GOVERNANCE_DECISIONS.labels(decision).inc(n)
        for transition, n in result.counts.flow_transitions.items():
            flow, what = transition.split(":", 1)
            metrics.FLOW_TRANSITIONS.labels(flow, what).inc(n)
        experiment_outcomes = Counter(
            (record.experiment, record.variant, record.outcome) for record in result.training.bandit_records
        )
        for (experiment, variant, outcome), n in experiment_outcomes.items():
            metrics.EXPERIMENT_OUTCOMES.labels(experiment, variant, outcome).inc(n)
        for dead in result.outputs.dead_letters:
            metrics.DEAD_LETTERS.labels(dead.kind).inc()
            log.warning(
                "dead-lettered p%d@%d (%s): %s", dead.record.partition, dead.record.offset, dead.kind, dead.reason
            )
        for job in result.outputs.jobs:
            metrics.JOBS_EMITTED.labels(job["flow"]).inc()
        # Summed over partitions first: a labelled child lookup costs microseconds.
        changes: Counter[tuple[str, str]] = Counter()
        for (_, change), counts in result.changes.segment_moves.items():
            for segment, n in counts.items():
                changes[(segment, change)] += n
        for (segment, change), n in changes.items():
            metrics.SEGMENT_CHANGES.labels(segment, change).inc(n)
        metrics.BATCH_SECONDS.observe(seconds)
        metrics.CACHED_USERS.set(len(self._cache))
        if result.counts.reco_quality:
            self.reco_quality.update(result.counts.reco_quality)
            metrics.RECO_PREDICTIONS.inc(result.counts.reco_quality["predictions"])
            for recommender in ("model", "popular"):
                metrics.RECO_HITS.labels(recommender).inc(result.counts.reco_quality[recommender])

    def _record_consumption(self, fetched: dict[TopicPartition, Any]) -> None:
        count = sum(len(records) for records in fetched.values())
        self.processed += count
        metrics.EVENTS_CONSUMED.inc(count)
        metrics.BATCH_RECORDS.observe(count)
        now_ms = time.time() * 1000
        for tp, records in fetched.items():
            latencies_ms = [max(0.0, now_ms - record.timestamp) for record in records]
            self.latencies_ms.extend(latencies_ms)
            metrics.EVENT_LATENCY.observe_many(latency / 1000 for latency in latencies_ms)
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - records[-1].offset - 1))
