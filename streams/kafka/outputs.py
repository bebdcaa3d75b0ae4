"""Publishing a batch's outputs (jobs and withdrawals, segment changes, dead letters, erasures)
at most once per id.

Every output goes to the partition numbered like the input partition it came from,
carries its deterministic id (jobs, withdrawals, dead letters and erasures in a `tidemail.id` header,
segment changes in their `change_id` field), and its topic's end offset is recorded in the
partition checkpoint of the next batch. A new owner of a partition (after a crash or a
rebalance) reads each output partition from the checkpointed offset to its end and
remembers the ids found there: records that a lost batch already published are then not
published a second time on replay. Outputs and checkpoint are committed in one transaction
(`fencing.py`), so what a lost batch published is never read; the recall also covers
records written before the transactions and costs at most one batch's outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.core.batch import BatchResult, DeadLetter, Erasure, Reroute, Withdrawal
from streams.core.erasure import erasure_id, erasure_record
from streams.core.jobs import format_time
from streams.core.partitioning import REROUTED_FROM_HEADER
from streams.core.segments import Transitions, change_id
from streams.core.withdrawal import KIND_HEADER, WITHDRAWAL, withdrawal_id, withdrawal_record
from streams.kafka.produce import NO_HEADERS, Record

ID_HEADER = "tidemail.id"
# A takeover waits on the recall: no fetch of it should idle for the default 500 ms.
RECALL_FETCH_WAIT_MS = 10


@dataclass(frozen=True, slots=True)
class OutputTopics:
    events: str
    jobs: str
    segment_changes: str
    dead_letters: str
    erasures: str

    @property
    def outputs(self) -> tuple[str, str, str, str]:
        return (self.jobs, self.segment_changes, self.dead_letters, self.erasures)


class OutputPublisher:
    """Sends outputs, skipping ids already published past the partition's checkpoint."""

    def __init__(self, bootstrap: str, topics: OutputTopics, max_record_bytes: int) -> None:
        self._max_record_bytes = max_record_bytes
        self._bootstrap = bootstrap
        self._topics = topics
        self._published: dict[int, set[str]] = {}
        self._change_parts: dict[str, dict[str, bytes]] = {"entered": {}, "exited": {}}
        self.suppressed = 0

    async def recall(self, since: Mapping[int, Mapping[str, int]]) -> None:
        """Remember, for each event partition in `since`, the ids already published to the
        same-numbered partition of each output topic after the offsets given for it. One
        consumer reads every partition at once: a takeover waits for one read, not one per
        partition."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=RECALL_FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, partition) for partition in since for topic in self._topics.outputs]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            found: dict[int, set[str]] = {partition: set() for partition in since}
            pending = set()
            for tp in tps:
                start = since[tp.partition].get(tp.topic, 0)
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    pending.add(tp)
            while pending:
                for tp, records in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                    for record in records:
                        found[tp.partition].update(self._ids_in(tp.topic, record))
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            self._published.update(found)
        finally:
            await consumer.stop()

    def _ids_in(self, topic: str, record: ConsumerRecord[bytes, bytes]) -> list[str]:
        if topic != self._topics.segment_changes:
            return [v.decode() for k, v in record.headers if k == ID_HEADER]
        try:
            return [str(orjson.loads(record.value or b"")["change_id"])]
        except (orjson.JSONDecodeError, KeyError, TypeError):  # not one of ours: nothing to skip on replay
            return []

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._published.pop(partition, None)

    def records(self, result: BatchResult) -> dict[tuple[str, int], list[Record]]:
        """Every output of `result` not yet published, by topic-partition, in order."""
        grouped: dict[tuple[str, int], list[Record]] = {}
        self._add_jobs(result, grouped)
        # After the batch's jobs: a deliverer reads a withdrawal after every job it withdraws.
        for withdrawal in result.outputs.withdrawals:
            self._add_withdrawal(withdrawal, grouped)
        self._add_segment_changes(result.outputs.segment_transitions, grouped)
        for dead in result.outputs.dead_letters:
            self._add_dead_letter(dead, grouped)
        for erased in result.changes.erasures.values():
            for erasure in erased.values():
                self._add_erasure(erasure, grouped)
        return grouped

    def _add_erasure(self, erasure: Erasure, grouped: dict[tuple[str, int], list[Record]]) -> None:
        partition, output_id = erasure.record.partition, erasure_id(erasure)
        if self._is_published(partition, output_id):
            return
        record = (erasure.user_id.encode(), orjson.dumps(erasure_record(erasure)), [(ID_HEADER, output_id.encode())])
        grouped.setdefault((self._topics.erasures, partition), []).append(record)

    def _add_withdrawal(self, withdrawal: Withdrawal, grouped: dict[tuple[str, int], list[Record]]) -> None:
        partition, output_id = withdrawal.record.partition, withdrawal_id(withdrawal)
        if self._is_published(partition, output_id):
            return
        headers = [(ID_HEADER, output_id.encode()), (KIND_HEADER, WITHDRAWAL.encode())]
        value = orjson.dumps(withdrawal_record(withdrawal))
        grouped.setdefault((self._topics.jobs, partition), []).append((withdrawal.user_id.encode(), value, headers))

    def _is_published(self, partition: int, output_id: str) -> bool:
        published = self._published.get(partition)
        if published and output_id in published:
            self.suppressed += 1
            return True
        return False

    def _add_jobs(self, result: BatchResult, grouped: dict[tuple[str, int], list[Record]]) -> None:
        topic = self._topics.jobs
        for job in result.outputs.jobs:
            job_id = job["job_id"]
            trigger = result.outputs.job_triggers[job_id]
            if self._is_published(trigger.partition, job_id):
                continue
            value = orjson.dumps(job)
            if len(value) > self._max_record_bytes:
                reason = f"job {job_id} is {len(value)} bytes; Kafka takes {self._max_record_bytes}"
                # Part of the batch's result, so it is counted and logged like every dead letter.
                result.outputs.dead_letters.append(DeadLetter(trigger, "job_too_large", reason))
                continue
            record = (job["user_id"].encode(), value, [(ID_HEADER, job_id.encode())])
            grouped.setdefault((topic, trigger.partition), []).append(record)

    def _add_segment_changes(
        self, transitions: list[tuple[int, Transitions]], grouped: dict[tuple[str, int], list[Record]]
    ) -> None:
        # Segment changes are most of a busy batch's outputs (a new user enters a dozen
        # segments at once), so a record is put together from parts encoded once: what the
        # changes of one evaluation share, and what each segment and direction adds.
        topic = self._topics.segment_changes
        for partition, moved in transitions:
            records = grouped.setdefault((topic, partition), [])
            evaluation = moved.evaluation_id
            opening = b'{"change_id":"%s' % evaluation.encode()
            key = moved.user_id.encode()
            # `{"user_id": ..., "definition_version": ...}` less its opening brace.
            shared = orjson.dumps(
                {
                    "user_id": moved.user_id,
                    "at": format_time(moved.at_ms),
                    "cause": moved.cause,
                    "definition_version": moved.definition_version,
                }
            )[1:]
            # Ids are built and checked only where a new owner recalled outputs.
            published = self._published.get(partition)
            for change, segments in moved.by_change():
                parts = self._change_parts[change]
                for segment in segments:
                    if published and self._is_published(partition, change_id(evaluation, segment, change)):
                        continue
                    part = parts.get(segment) or self._change_part(change, segment)
                    # No header: the value has the id, and a header costs ~2 us a record to write.
                    records.append((key, opening + part + shared, NO_HEADERS))

    def _change_part(self, change: str, segment: str) -> bytes:
        """What one segment and direction add to a change record: the end of its id, `segment`, `change`."""
        id_end = orjson.dumps(change_id("", segment, change))[1:]
        part = b'%s,"segment":%s,"change":"%s",' % (id_end, orjson.dumps(segment), change.encode())
        self._change_parts[change][segment] = part
        return part

    def _add_dead_letter(self, dead: DeadLetter, grouped: dict[tuple[str, int], list[Record]]) -> None:
        source = dead.record
        # A timer firing has no offset (-1); its record names the user and the instant.
        origin = str(source.offset) if source.offset >= 0 else f"{(source.key or b'').decode()}@{source.timestamp_ms}"
        output_id = f"{source.partition}:{origin}:{dead.kind}"
        if self._is_published(source.partition, output_id):
            return
        headers = [
            *source.headers,
            (ID_HEADER, output_id.encode()),
            (KIND_HEADER, dead.kind.encode()),
            ("tidemail.reason", dead.reason.encode()),
            ("tidemail.source.topic", self._topics.events.encode()),
            ("tidemail.source.partition", str(source.partition).encode()),
            ("tidemail.source.offset", str(source.offset).encode()),
        ]
        # The original bytes and headers travel unchanged so a fixed record can be replayed as it was.
        grouped.setdefault((self._topics.dead_letters, source.partition), []).append(
            (source.key, source.value, headers)
        )


def rerouted_records(events_topic: str, reroutes: Iterable[Reroute]) -> dict[tuple[str, int], list[Record]]:
    """Each misplaced event as a record for its user's partition: key, value and headers as they
    came, plus where it came from. A keyless event gets its user id as key, as it should have had.

    Not tracked by id like the other outputs: a copy that a replay forwards again is the same
    event, which the user's state skips by `event_id` like any producer retry.
    """
    grouped: dict[tuple[str, int], list[Record]] = {}
    for reroute in reroutes:
        source = reroute.record
        origin = f"{events_topic}:{source.partition}:{source.offset}".encode()
        headers = [*source.headers, (REROUTED_FROM_HEADER, origin)]
        grouped.setdefault((events_topic, reroute.partition), []).append(
            (source.key or reroute.user_id.encode(), source.value, headers)
        )
    return grouped
