"""Making one processed batch durable: the worker's whole durability protocol, in order.

1. Outputs (jobs, segment changes, dead letters) are produced and acknowledged, each at
   most once per id (`outputs.py`); beside them, the batch's training records for the trainer
   and the events that arrived on a partition not their user's, forwarded to it.
2. Per partition, every key the batch changes (user states, timer index moves, segment
   sizes, and the checkpoint: last input offset and output topics' end offsets) is
   produced to the `users` table's changelog and acknowledged. An erased user's key is a
   tombstone (None), beside their erasure marker, and so are all their timer entries.
3. The same keys go to local RocksDB with the changelog offset they reflect.
4. Only then does in-memory bookkeeping change (checkpoints, segment sizes, cached states),
   so a failed batch that is retried does not count its segment changes twice.

A crash anywhere replays from the last durable checkpoint. Each user's state carries the
offset of the last event applied to it, so replayed events are skipped for users whose
state already reflects them; outputs a lost batch had already published are recognised
by id and not published again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaProducer

from streams.core.batch import BatchResult, StateChanges
from streams.core.state_codec import encode_state
from streams.kafka.clients import WorkerClients
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

    @property
    def checkpoints(self) -> Mapping[int, Checkpoint]:
        """The last durable checkpoint of each partition taken over."""
        return self._checkpoints

    def resume(self, partitions: Iterable[int]) -> None:
        """Take over `partitions` from the checkpoints stored with their state."""
        self._checkpoints = {partition: self._store.checkpoint(partition) for partition in partitions}

    async def commit(self, result: BatchResult) -> None:
        producer = self._clients.producer
        for partition, erased in result.changes.erasures.items():
            # The core knows a user's earliest timer entry only; the index holds the rest.
            leftover = self._store.timers_of(partition, erased.keys())
            result.changes.timer_removals.setdefault(partition, []).extend(leftover)
        output_ends, _, _ = await asyncio.gather(
            self._outputs.publish(producer, result),
            self._publish_training(producer, result),
            send_grouped(producer, rerouted_records(self._events_topic, result.outputs.reroutes)),
        )
        checkpoints = advanced_checkpoints(self._checkpoints, result.changes.last_offsets, output_ends)
        sizes = self._sizes.after(result.changes.segment_moves)
        changelog = changelog_items(result.changes, checkpoints, sizes)
        changelog_offsets = await self._publish_changelog(producer, changelog)
        for partition, items in changelog.items():
            self._store.write(partition, items, changelog_offsets.get(partition))
        self._checkpoints.update(checkpoints)
        self._sizes.update(sizes)
        self._states.erase(result.changes.erasures)
        self._states.remember(result.changes.states)

    async def _publish_training(self, producer: AIOKafkaProducer, result: BatchResult) -> None:
        # At least once, in input order: a replayed batch may teach the trainer an
        # interaction twice, which moves a model about as much as one more view.
        if result.training:
            chunks: list[Record] = [(None, chunk.to_bytes(), NO_HEADERS) for chunk in result.training.split()]
            await send_grouped(producer, {(self._interactions_topic, 0): chunks})

    async def _publish_changelog(self, producer: AIOKafkaProducer, changelog: ChangelogItems) -> dict[int, int]:
        """Send every partition's changes to the changelog; return the last offset written per partition."""
        topic = self._store.changelog_topic
        grouped = {
            (topic, partition): [(key, value, NO_HEADERS) for key, value in items.items()]
            for partition, items in changelog.items()
        }
        ends = await send_grouped(producer, grouped)
        return {partition: end - 1 for (_, partition), end in ends.items()}


def advanced_checkpoints(
    durable: Mapping[int, Checkpoint], last_offsets: Mapping[int, int], output_ends: Mapping[int, dict[str, int]]
) -> dict[int, Checkpoint]:
    """The checkpoint of every partition a batch consumed from or published to, once it is durable."""
    return {
        partition: durable.get(partition, Checkpoint(None, {})).advanced(
            last_offsets.get(partition), output_ends.get(partition, {})
        )
        for partition in {*last_offsets, *output_ends}
    }


def changelog_items(
    changes: StateChanges, checkpoints: Mapping[int, Checkpoint], sizes: Mapping[int, Counter[str]]
) -> ChangelogItems:
    """Per partition, every key a batch changes: states, timer index moves, sizes, checkpoint."""
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
    for partition, checkpoint in checkpoints.items():
        items.setdefault(partition, {})[CHECKPOINT_KEY] = checkpoint.encode()
    return items
