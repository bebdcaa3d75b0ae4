"""The worker's hot path: batch consumption of the events topic inside a Faust worker.

Faust decides which partitions this worker owns, recovers the `users` table, and runs
the web server and CLI. Events themselves bypass Faust's per-message stream machinery:
a plain aiokafka consumer is assigned exactly the owned partitions (`ownership.py`) and
fetches them in batches; the pure core processes each batch and `committer.py` makes it
durable, after which the group's offsets are committed in the background
(`group_offsets.py`). Between batches, due timers fire (`timers.py`) through the same
durable path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mode import Service

from streams import metrics
from streams.consumer_lag import LAG_INTERVAL_S, ConsumerLag
from streams.core.batch import BatchResult, InputRecord
from streams.core.clock import Clock
from streams.core.processing import BatchProcessor
from streams.core.state_cache import StateCache
from streams.kafka import worker_metrics
from streams.kafka.clients import MAX_RECORD_BYTES, WorkerClients
from streams.kafka.committer import BatchCommitter
from streams.kafka.fencing import PartitionsFenced
from streams.kafka.group_offsets import GroupOffsets
from streams.kafka.outputs import OutputPublisher, OutputTopics
from streams.kafka.ownership import RETRY_BACKOFF_SECONDS, PartitionOwnership
from streams.kafka.segment_sizes import SegmentSizes
from streams.kafka.store import UserStore
from streams.kafka.timers import DueTimers
from streams.kafka.users import UserStates
from streams.kafka.worker_metrics import Fetched

log = logging.getLogger(__name__)

# Events processed between two turns of the event loop: a batch holds the worker's lock
# throughout, but its API and heartbeats get a turn after each slice (2-3 ms of a core);
# a whole batch of 5,000 at once kept GET /users/{id} waiting while the worker caught up.
SLICE_RECORDS = 50


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Where the worker reads and writes, and how much it takes on at once."""

    bootstrap: str
    group_id: str
    topics: OutputTopics
    interactions_topic: str
    batch_max_records: int
    batch_timeout_ms: int
    timer_interval_ms: int
    timer_batch_users: int


class BatchWorker(Service):
    """Consumes owned event partitions in batches and fires due timers, one durable batch at a time."""

    def __init__(
        self,
        *,
        config: WorkerConfig,
        store: UserStore,
        processor: BatchProcessor,
        cache: StateCache,
        clock: Clock,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._config = config
        self._processor = processor
        self.clients = WorkerClients(config.bootstrap, config.group_id)
        self._states = UserStates(store, cache)
        self.segment_sizes = SegmentSizes()
        self.lag = ConsumerLag(config.topics.events)
        self._assemble(store, clock)
        # Held while a batch is in flight, so a rebalance waits for it to become durable.
        self._lock = asyncio.Lock()
        self._failures_in_a_row = 0
        self._misrouted = worker_metrics.MisroutedEvents(config.topics.events)
        self._group_offsets = GroupOffsets(lambda: self.clients.consumer)
        # Called for each durable batch of events or timers, before its offsets are committed.
        self.on_batch: list[Callable[[BatchResult], None]] = []
        # Called with the user ids of each durable batch of events, erased users among them (the
        # prediction cache drops them).
        self.on_users_changed: list[Callable[[list[str]], Awaitable[None]]] = []
        # Called with the latencies of each durable batch of events, from their Kafka timestamps.
        self.on_consumed: list[Callable[[Sequence[float]], None]] = []

    def _assemble(self, store: UserStore, clock: Clock) -> None:
        config = self._config
        outputs = OutputPublisher(config.bootstrap, config.topics, MAX_RECORD_BYTES)
        self._committer = BatchCommitter(
            clients=self.clients,
            outputs=outputs,
            events_topic=config.topics.events,
            interactions_topic=config.interactions_topic,
            store=store,
            states=self._states,
            sizes=self.segment_sizes,
        )
        self.ownership = PartitionOwnership(
            events_topic=config.topics.events,
            clients=self.clients,
            committer=self._committer,
            outputs=outputs,
            store=store,
            states=self._states,
            sizes=self.segment_sizes,
            sleep=self.sleep,
        )
        self._timers = DueTimers(
            store=store,
            processor=self._processor,
            committer=self._committer,
            states=self._states,
            clock=clock,
            batch_users=config.timer_batch_users,
        )

    async def on_start(self) -> None:
        await self.clients.start()

    async def on_stop(self) -> None:
        # A worker whose start failed earlier (its web port taken, say) stops this service
        # too, and there are no clients to close.
        if not self.clients.started.is_set():
            return
        async with self._lock:
            await self._group_offsets.flush()
            await self.clients.stop()

    async def assign(self, partitions: set[int]) -> None:
        """Take over exactly `partitions` (after Faust recovered their table state)."""
        await self.clients.started.wait()
        async with self._lock:
            await self.ownership.assign(partitions)
            # Readiness needs the new partitions' lag: measured now, not at the next interval.
            await self.lag.refresh(self.clients.consumer)

    async def fence(self, partitions: set[int]) -> None:
        """Fence every earlier writer of `partitions`, before Faust recovers their state."""
        await self.clients.started.wait()
        async with self._lock:
            await self.ownership.fence(partitions)

    async def release(self) -> None:
        """Give up every partition, after the batch in flight (if any) is durable."""
        if not self.clients.started.is_set():
            return
        async with self._lock:
            await self._group_offsets.flush()
            await self.ownership.release()
            self.lag.export({})

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            if not self.ownership.owned:
                await self.sleep(0.05)
                continue
            fetched = await self.clients.consumer.getmany(
                timeout_ms=self._config.batch_timeout_ms, max_records=self._config.batch_max_records
            )
            if not fetched:
                continue
            async with self._lock:
                owned = self.ownership.owned
                owned_now = {tp: recs for tp, recs in fetched.items() if tp.partition in owned}
                if not owned_now or self.should_stop:
                    continue
                try:
                    await self._handle(owned_now)
                    self._failures_in_a_row = 0
                except PartitionsFenced as fenced:
                    await self._leave_fenced(fenced)
                except Exception:
                    await self._recover_from_failed_batch()

    @Service.task
    async def _fire_due_timers(self) -> None:
        """Re-evaluate users whose conditions can flip with no new event (time passing)."""
        more_due = False
        while not self.should_stop:
            if not more_due:
                await self.sleep(self._config.timer_interval_ms / 1000)
            more_due = False
            if not self.ownership.owned:
                continue
            async with self._lock:
                if self.should_stop:  # on_stop closed the clients while we waited for the lock
                    return
                owned = self.ownership.owned
                due = self._timers.due(owned)
                if not due:
                    continue
                more_due = self._timers.more_due(due, len(owned))
                started = time.perf_counter()
                try:
                    result = await self._timers.fire(due)
                except PartitionsFenced as fenced:
                    await self._leave_fenced(fenced)
                    continue
                except Exception:
                    await self._recover_from_failed_batch()
                    continue
                self._failures_in_a_row = 0
                self._observe(result, started)

    @Service.task
    async def _measure_lag(self) -> None:
        while not self.should_stop:
            await self.sleep(LAG_INTERVAL_S)
            if self.clients.started.is_set() and not self.should_stop:
                await self.lag.refresh(self.clients.consumer)

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
            await self.ownership.rewind()
        except Exception:
            log.exception("rewinding failed; the next batch retries it")

    async def _leave_fenced(self, fenced: PartitionsFenced) -> None:
        # Not a failure to retry: the rest of the batch is durable, or rewound here.
        await self.ownership.give_up(fenced.partitions)
        try:
            await self.ownership.rewind()
        except Exception:
            await self._recover_from_failed_batch()

    async def _handle(self, fetched: Fetched) -> None:
        started = time.perf_counter()
        batch = {
            tp.partition: [InputRecord(tp.partition, r.offset, r.key, r.value, r.timestamp, r.headers) for r in records]
            for tp, records in fetched.items()
        }
        result = BatchResult()
        for _ in self._processor.process_in_slices(batch, self._states.load, result, SLICE_RECORDS):
            await asyncio.sleep(0)
        await self._committer.commit(result)
        self._misrouted.note(result.outputs.reroutes)
        # Observed before the commit, so whoever sees the offsets committed sees the counts.
        self._observe(result, started)
        self._group_offsets.commit_soon({tp: records[-1].offset + 1 for tp, records in fetched.items()})
        changed_users = [user for states in result.changes.states.values() for user in states]
        changed_users += [user for erased in result.changes.erasures.values() for user in erased]
        for changed in self.on_users_changed:
            await changed(changed_users)
        latencies = worker_metrics.latencies_ms(fetched)
        worker_metrics.export_consumption(latencies)
        for consumed in self.on_consumed:
            consumed(latencies)

    def _observe(self, result: BatchResult, started: float) -> None:
        worker_metrics.export_batch(result, time.perf_counter() - started, len(self._states))
        for observe in self.on_batch:
            observe(result)
