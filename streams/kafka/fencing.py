"""Fencing a paused worker's writes: a transactional producer per owned event partition.

A worker stopped past its session timeout (SIGSTOP, a long GC pause, a frozen VM) is
expelled from the group while alive, and when it resumes it finishes the batch it had in
flight. Every batch writes each event partition's outputs (jobs, withdrawals, segment
changes, dead letters, erasures) and its changelog records (states, timers, checkpoint) in
one Kafka transaction of a producer whose `transactional.id` names the partition. A new
owner's producer registers the same id before it reads the partition's checkpoint and
outputs, and the broker then aborts the paused worker's open transaction and refuses its
next write or commit (`ProducerFenced`): its records are never read, by the deliverer,
Faust's changelog recovery or a new owner, all of which read committed records only.
This is Kafka Streams' first exactly-once design, a producer per task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced
from aiokafka.producer import sender

log = logging.getLogger(__name__)

# The errors of a producer whose transactional id another producer registered since.
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch)

# How long a producer waits to retry beginning a transaction while the coordinator is still
# writing the previous one's commit markers (CONCURRENT_TRANSACTIONS, KAFKA-5477).
CONCURRENT_TRANSACTIONS_RETRY_S = 0.005


def shorten_concurrent_transactions_retry() -> None:
    """Retry after 5 ms instead of aiokafka's fixed 20 ms (the Java client's figure, which
    franz-go made a setting). A worker begins each partition's next transaction as soon as
    the last committed, so on a local broker over half of them met the markers still being
    written and waited out the full 20 ms: back-to-back transactions took p90 25 ms, and
    2-10 ms with a 2-5 ms retry."""
    if not hasattr(sender, "BACKOFF_OVERRIDE"):
        raise RuntimeError(
            "aiokafka.producer.sender.BACKOFF_OVERRIDE is gone: this aiokafka version retries "
            "CONCURRENT_TRANSACTIONS some other way; check how before raising the aiokafka pin"
        )
    sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_RETRY_S


class PartitionsFenced(Exception):
    """Another worker took these event partitions over: this one must not write for them again."""

    def __init__(self, partitions: Iterable[int]) -> None:
        self.partitions = frozenset(partitions)
        super().__init__(
            f"event partitions {sorted(self.partitions)} are fenced: another worker registered their transactional "
            "producers (this one was expelled from the group, e.g. paused past its session timeout)"
        )


class PartitionWriters:
    """The transactional producer of each owned event partition."""

    def __init__(self, bootstrap: str, transactional_prefix: str, **producer_options: Any) -> None:
        self._bootstrap = bootstrap
        self._prefix = transactional_prefix
        self._options = producer_options
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._leftovers_expected = False
        shorten_concurrent_transactions_retry()

    def transactional_id(self, partition: int) -> str:
        return f"{self._prefix}-{partition}"

    async def own(self, partitions: Iterable[int]) -> None:
        """Hold a registered producer for exactly `partitions`: registering fences every
        earlier producer of the same partition, wherever it runs."""
        if not self._leftovers_expected:
            expect_fenced_leftovers(asyncio.get_running_loop())
            self._leftovers_expected = True
        wanted = set(partitions)
        await self.drop(set(self._producers) - wanted)
        new = sorted(wanted - set(self._producers))
        producers = [
            AIOKafkaProducer(
                bootstrap_servers=self._bootstrap, transactional_id=self.transactional_id(partition), **self._options
            )
            for partition in new
        ]
        try:
            await asyncio.gather(*(producer.start() for producer in producers))
        except BaseException:  # a rebalance cancelling a fence, too: no producer is left holding an id
            await asyncio.gather(*(producer.stop() for producer in producers), return_exceptions=True)
            raise
        self._producers.update(zip(new, producers, strict=True))

    def writer(self, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            raise PartitionsFenced({partition})
        return producer

    async def abort(self, partition: int, error: BaseException) -> None:
        """End a transaction that failed: aborted when the producer may go on, else the producer
        is closed (a fenced producer can do nothing more) until the partition is owned again."""
        producer = self._producers.get(partition)
        if producer is None:
            return
        if not isinstance(error, FENCED_ERRORS):
            try:
                await producer.abort_transaction()
                return
            except Exception:
                log.exception("aborting event partition %d's transaction failed; its producer is closed", partition)
        await self.drop([partition])

    async def drop(self, partitions: Iterable[int]) -> None:
        closing = [self._producers.pop(partition) for partition in partitions if partition in self._producers]
        await asyncio.gather(*(producer.stop() for producer in closing), return_exceptions=True)

    async def close(self) -> None:
        await self.drop(list(self._producers))


def expect_fenced_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Take a fenced producer's failures that nobody awaited for what they are. A fenced
    producer's sender fails futures inside aiokafka that only a commit, an abort or a later
    send would await (the transaction's end, a batch's drain), and none of those follow a
    fence; asyncio would log each as "exception was never retrieved", a bug's signature."""
    passed_on = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        unretrieved = str(context.get("message", "")).endswith("never retrieved")
        if unretrieved and isinstance(context.get("exception"), FENCED_ERRORS):
            log.debug("a fenced producer's failure, not awaited after the fence: %s", context["exception"])
        elif passed_on is not None:
            passed_on(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
