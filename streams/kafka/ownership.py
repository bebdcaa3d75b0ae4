"""Which event partitions this worker processes, and putting them back at their durable checkpoints.

Faust decides the partitions (its group assignment of the `users` table changelog) and
recovers their state; the worker's own consumer is then assigned exactly those.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

from streams import metrics
from streams.kafka.clients import WorkerClients
from streams.kafka.committer import BatchCommitter
from streams.kafka.outputs import OutputPublisher
from streams.kafka.segment_sizes import SegmentSizes
from streams.kafka.store import UserStore
from streams.kafka.users import UserStates

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = (0.5, 1, 2, 5, 10)


class PartitionOwnership:
    """Assigns and releases event partitions, and rewinds them to their checkpoints."""

    def __init__(
        self,
        *,
        events_topic: str,
        clients: WorkerClients,
        committer: BatchCommitter,
        outputs: OutputPublisher,
        store: UserStore,
        states: UserStates,
        sizes: SegmentSizes,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._events_topic = events_topic
        self._clients = clients
        self._committer = committer
        self._outputs = outputs
        self._store = store
        self._states = states
        self._sizes = sizes
        self._sleep = sleep
        self._owned: frozenset[int] = frozenset()

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    async def assign(self, partitions: set[int]) -> None:
        """Take over exactly `partitions` (after Faust recovered their table state)."""
        dropped = self._owned - partitions
        self._states.forget(dropped)
        self._outputs.forget(dropped)
        self._clients.consumer.assign([TopicPartition(self._events_topic, p) for p in sorted(partitions)])
        # Registering each partition's producer fences any earlier owner before its outputs are read.
        await self._clients.writers.own(partitions)
        self._committer.resume(partitions)
        await self._rewind_until_done()
        self._set_owned(frozenset(partitions))
        self._sizes.load(self._store, partitions)
        log.info("hot path owns event partitions %s", sorted(partitions))

    async def release(self) -> None:
        """Give up every partition."""
        self._clients.consumer.assign([])
        await self._clients.writers.drop(self._owned)
        self._states.forget(self._owned)
        self._outputs.forget(self._owned)
        self._set_owned(frozenset())
        self._sizes.clear()

    async def give_up(self, fenced: frozenset[int]) -> None:
        """Stop processing partitions another worker took over while this one was away; the
        group assigns them again if they come back (a rebalance calls `assign`)."""
        log.warning(
            "event partitions %s were taken over by another worker (this one was expelled from the group, "
            "e.g. paused past its session timeout): left unprocessed until the group assigns them again",
            sorted(fenced),
        )
        metrics.PARTITIONS_FENCED.inc(len(fenced & self._owned))
        kept = self._owned - fenced
        self._clients.consumer.assign([TopicPartition(self._events_topic, p) for p in sorted(kept)])
        await self._clients.writers.drop(fenced)
        self._states.forget(fenced)
        self._outputs.forget(fenced)
        self._committer.resume(kept)
        self._set_owned(kept)
        self._sizes.load(self._store, kept)

    def _set_owned(self, partitions: frozenset[int]) -> None:
        self._owned = partitions
        self._store.hold(partitions)
        metrics.OWNED_PARTITIONS.set(len(partitions))

    async def rewind(self) -> None:
        """Consume each partition again from its checkpoint, and recall the outputs published
        after it, so that replaying what follows publishes none of them twice."""
        checkpoints = self._committer.checkpoints
        for partition, checkpoint in checkpoints.items():
            tp = TopicPartition(self._events_topic, partition)
            if checkpoint.input_offset is None:
                await self._clients.consumer.seek_to_beginning(tp)
            else:
                self._clients.consumer.seek(tp, checkpoint.input_offset + 1)
        if checkpoints:
            await self._outputs.recall({partition: cp.output_ends for partition, cp in checkpoints.items()})

    async def fence(self, partitions: set[int]) -> None:
        """Register the transactional producers of `partitions` before their changelog is
        recovered, keeping those of the partitions owned now: every earlier writer of them
        is fenced, its open transaction aborted."""
        await self._until_done(
            "registering transactional producers", lambda: self._clients.writers.own(self._owned | partitions)
        )

    async def _rewind_until_done(self) -> None:
        await self._until_done("reading checkpoints and recent outputs", self.rewind)

    async def _until_done(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        # Right after a broker restart, partitions can be leaderless for a while and
        # transactional or output reads fail; processing must not start without them.
        for attempt, delay in enumerate(RETRY_BACKOFF_SECONDS * 3):
            try:
                await action()
                return
            except Exception:
                log.exception("%s failed (attempt %d); retry in %ss", what, attempt + 1, delay)
                await self._sleep(delay)
        await action()
