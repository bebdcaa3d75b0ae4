"""Making one processed batch durable: the worker's whole durability protocol, in order.

1. Per event partition, in one Kafka transaction of that partition's producer
   (`fencing.py`): the outputs (jobs, segment changes, dead letters, erasures) published at
   most once per id (`outputs.py`) and every key the batch changes (user states, timer
   index moves, segment sizes, and the checkpoint: last input offset and output topics'
   end offsets as of the previous batch) to the `users` table's changelog, sent together;
   then the transaction commits. An erased
   user's key is a tombstone (None), beside their erasure marker, and so are all their
   timer entries. Beside the transactions, the batch's training records for the trainer
   and the events that arrived on a partition not their user's, forwarded to it.
2. The same keys go to local RocksDB with the changelog offset they reflect.
3. Only then does in-memory bookkeeping change (checkpoints, segment sizes, cached states),
   so a failed batch that is retried does not count its segment changes twice.

A crash anywhere replays from the last durable checkpoint. Each user's state carries the
offset of the last event applied to it, so replayed events are skipped for users whose
state already reflects them; outputs a lost batch had already published are recognised
by id and not published again. A worker that another took a partition over from (it was
paused past its session timeout) cannot commit for it any more: the broker fences it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaProducer

from streams import metrics
from streams.core.batch import BatchResult, StateChanges
from streams.core.state_codec import encode_state
from streams.kafka.clients import WorkerClients
from streams.kafka.fencing import FENCED_ERRORS, PartitionsFenced
from streams.kafka.outputs import OutputPublisher, rerouted_records
from streams.kafka.produce import NO_HEADERS, Record, send_grouped
from streams.kafka.segment_sizes import SegmentSizes, encode_sizes
from streams.kafka.store import CHECKPOINT_KEY, SEGMENT_SIZES_KEY, Checkpoint, UserStore, erasure_key, timer_key
from streams.kafka.users import UserStates

# Per partition, each changed key and its new value (None deletes it).
ChangelogItems = dict[int, dict[bytes, bytes | None]]


class BatchCommitter:
    """Makes each batch durable, and remembers how far each partition is durable."""

    def __init__(
        self,
        *,
        clients: WorkerClients,
        outputs: OutputPublisher,
        events_topic: str,
        interactions_topic: str,
        store: UserStore,
        states: UserStates,
        sizes: SegmentSizes,
    ) -> None:
        self._clients = clients
        self._outputs = outputs
        self._events_topic = events_topic
        self._interactions_topic = interactions_topic
        self._store = store
        self._states = states
        self._sizes = sizes
        self._checkpoints: dict[int, Checkpoint] = {}
        # Per partition, each output topic's end after the last durable batch.
        self._output_ends: dict[int, dict[str, int]] = {}

    @property
    def checkpoints(self) -> Mapping[int, Checkpoint]:
        """The last durable checkpoint of each partition taken over."""
        return self._checkpoints

    def resume(self, partitions: Iterable[int]) -> None:
        """Take over `partitions` from the checkpoints stored with their state."""
        self._checkpoints = {partition: self._store.checkpoint(partition) for partition in partitions}
        self._output_ends = {partition: self._checkpoints[partition].output_ends for partition in partitions}

    async def commit(self, result: BatchResult) -> None:
        for partition, erased in result.changes.erasures.items():
            # The core knows a user's earliest timer entry only; the index holds the rest.
            leftover = self._store.timers_of(partition, erased.keys())
            result.changes.timer_removals.setdefault(partition, []).extend(leftover)
        outputs = self._outputs.records(result)
        sizes = self._sizes.after(result.changes.segment_moves)
        changelog = changelog_items(result.changes, sizes)
        for topic_partition in outputs:
            changelog.setdefault(topic_partition[1], {})
        for partition in result.changes.last_offsets:
            changelog.setdefault(partition, {})
        producer = self._clients.producer
        side = asyncio.gather(
            self._publish_training(producer, result),
            send_grouped(producer, rerouted_records(self._events_topic, result.outputs.reroutes)),
        )
        done = await asyncio.gather(
            *(self._transact(partition, items, outputs, result) for partition, items in changelog.items()),
            return_exceptions=True,
        )
        await side
        durable = {partition for partition, outcome in zip(changelog, done, strict=True) if outcome is None}
        self._sizes.update({p: counts for p, counts in sizes.items() if p in durable})
        self._states.erase({p: erased for p, erased in result.changes.erasures.items() if p in durable})
        self._states.remember({p: states for p, states in result.changes.states.items() if p in durable})
        raise_failures(dict(zip(changelog, done, strict=True)))

    async def _transact(
        self,
        partition: int,
        items: dict[bytes, bytes | None],
        outputs: Mapping[tuple[str, int], list[Record]],
        result: BatchResult,
    ) -> None:
        """One partition's outputs and changelog records in one transaction, then RocksDB."""
        producer = self._clients.writers.writer(partition)
        # Output ends as of the previous batch: a recall reads at most one committed batch more,
        # and outputs and changelog go out in one round trip.
        checkpoint = self._checkpoints.get(partition, Checkpoint(None, {})).advanced(
            result.changes.last_offsets.get(partition), self._output_ends.get(partition, {})
        )
        items[CHECKPOINT_KEY] = checkpoint.encode()
        changelog = (self._store.changelog_topic, partition)
        writes = {tp: records for tp, records in outputs.items() if tp[1] == partition}
        writes[changelog] = [(key, value, NO_HEADERS) for key, value in items.items()]
        began = time.perf_counter()
        await producer.begin_transaction()
        try:
            ends = await send_grouped(producer, writes)
            await producer.commit_transaction()
            metrics.TRANSACTION_SECONDS.observe(time.perf_counter() - began)
        except BaseException as error:
            await self._clients.writers.abort(partition, error)
            if isinstance(error, FENCED_ERRORS):
                raise PartitionsFenced({partition}) from error
            raise
        self._store.write(partition, items, ends[changelog] - 1)
        self._checkpoints[partition] = checkpoint
        output_ends = {tp[0]: end for tp, end in ends.items() if tp != changelog}
        self._output_ends[partition] = {**self._output_ends.get(partition, {}), **output_ends}

    async def _publish_training(self, producer: AIOKafkaProducer, result: BatchResult) -> None:
        # At least once, in input order: a replayed batch may teach the trainer an
        # interaction twice, which moves a model about as much as one more view.
        if result.training:
            chunks: list[Record] = [(None, chunk.to_bytes(), NO_HEADERS) for chunk in result.training.split()]
            await send_grouped(producer, {(self._interactions_topic, 0): chunks})


def raise_failures(outcomes: Mapping[int, BaseException | None]) -> None:
    """Raise what failed in a batch's partitions: every fenced one together, else the first error."""
    failures = [outcome for outcome in outcomes.values() if outcome is not None]
    fenced = {p for failure in failures if isinstance(failure, PartitionsFenced) for p in failure.partitions}
    if fenced:
        raise PartitionsFenced(fenced)
    if failures:
        raise failures[0]


def changelog_items(changes: StateChanges, sizes: Mapping[int, Counter[str]]) -> ChangelogItems:
    """Per partition, every key a batch changes but the checkpoint: states, timer index moves, sizes."""
    items: ChangelogItems = {}
    for partition, states in changes.states.items():
        items[partition] = {user_id.encode(): encode_state(state) for user_id, state in states.items()}
    for partition, erased in changes.erasures.items():
        part = items.setdefault(partition, {})
        for user_id, erasure in erased.items():
            part[erasure_key(user_id)] = str(erasure.erased_ms).encode()
            # A new state when the user came back within the batch (events after the erasure).
            part.setdefault(user_id.encode(), None)
    for partition, entries in changes.timer_removals.items():
        part = items.setdefault(partition, {})
        for due_ms, user_id in entries:
            part[timer_key(due_ms, user_id)] = None
    for partition, entries in changes.timer_additions.items():
        part = items.setdefault(partition, {})
        for due_ms, user_id in entries:
            part[timer_key(due_ms, user_id)] = b""
    for partition, partition_sizes in sizes.items():
        items.setdefault(partition, {})[SEGMENT_SIZES_KEY] = encode_sizes(partition_sizes)
    return items
