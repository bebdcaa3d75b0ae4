"""Publishing a batch's outputs (jobs, segment changes, dead letters) at most once per id.

Every output goes to the partition numbered like the input partition it came from,
carries its deterministic id in a `tidemail.id` header, and its topic's end offset
is recorded in the partition checkpoint once the batch is durable. A new owner of a
partition (after a crash or a rebalance) reads each output partition from the
checkpointed offset to its end and remembers the ids found there: records that a
lost batch already published are then not published a second time on replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.batching import Outgoing, send_grouped
from streams.jobs import format_time
from streams.pipeline import BatchResult, DeadLetter
from streams.segments import SegmentChange, change_id, evaluation_identity

ID_HEADER = "tidemail.id"


@dataclass(frozen=True, slots=True)
class OutputTopics:
    events: str
    jobs: str
    segment_changes: str
    dead_letters: str

    @property
    def outputs(self) -> tuple[str, str, str]:
        return (self.jobs, self.segment_changes, self.dead_letters)


@dataclass(slots=True)
class OutputRecord(Outgoing):
    output_id: str = ""


class OutputPublisher:
    """Sends outputs, skipping ids already published past the partition's checkpoint."""

    def __init__(self, producer: AIOKafkaProducer, bootstrap: str, topics: OutputTopics, max_record_bytes: int) -> None:
        self._producer = producer
        self._max_record_bytes = max_record_bytes
        self._bootstrap = bootstrap
        self._topics = topics
        self._published: dict[int, set[str]] = {}
        self.suppressed = 0

    async def recall(self, partition: int, since: dict[str, int]) -> None:
        """Remember the ids already published to `partition` of each output topic after `since`."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, partition) for topic in self._topics.outputs]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            found: set[str] = set()
            for tp in tps:
                start = since.get(tp.topic, 0)
                if start >= ends[tp]:
                    continue
                consumer.seek(tp, start)
                while await consumer.position(tp) < ends[tp]:
                    for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                        found.update(v.decode() for k, v in record.headers if k == ID_HEADER)
            self._published[partition] = found
        finally:
            await consumer.stop()

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._published.pop(partition, None)

    async def publish(self, result: BatchResult) -> dict[int, dict[str, int]]:
        """Send and await every output; return per partition each output topic's next offset."""
        records = []
        for record in self._records(result):
            if record.output_id in self._published.get(record.partition, ()):
                self.suppressed += 1
            elif record.topic == self._topics.jobs and (size := len(record.value or b"")) > self._max_record_bytes:
                trigger = result.job_triggers[record.output_id]
                reason = f"job {record.output_id} is {size} bytes; Kafka takes {self._max_record_bytes}"
                dead = DeadLetter(trigger, "job_too_large", reason)
                # Part of the batch's result, so it is counted and logged like every dead letter.
                result.dead_letters.append(dead)
                records.append(self._dead_letter_record(dead))
            else:
                records.append(record)
        ends: dict[int, dict[str, int]] = {}
        for (topic, partition), end in (await send_grouped(self._producer, records)).items():
            ends.setdefault(partition, {})[topic] = end
        return ends

    def _records(self, result: BatchResult) -> list[OutputRecord]:
        records = []
        for job in result.jobs:
            partition = result.job_triggers[job["job_id"]].partition
            records.append(self._record(self._topics.jobs, partition, job["user_id"], orjson.dumps(job), job["job_id"]))
        records.extend(self._segment_change_records(result.segment_changes))
        records.extend(self._dead_letter_record(dead) for dead in result.dead_letters)
        return records

    def _segment_change_records(self, changes: list[tuple[int, SegmentChange]]) -> Iterator[OutputRecord]:
        # Segment changes are most of a busy batch's outputs (a new user enters several
        # segments at once). Those of one evaluation come together and share the user, the
        # instant and the cause, so that part of their ids and values is encoded once.
        topic = self._topics.segment_changes
        for (user_id, at_ms, cause, version), evaluated in groupby(changes, _evaluation_of):
            identity = evaluation_identity(user_id, cause, at_ms)
            key = user_id.encode()
            # `{"user_id": ..., "definition_version": ...}` less its opening brace.
            shared = orjson.dumps(
                {"user_id": user_id, "at": format_time(at_ms), "cause": cause, "definition_version": version}
            )[1:]
            for partition, change in evaluated:
                output_id = change_id(identity, change.segment, change.change)
                value = b'{"change_id":"%s","segment":%s,"change":"%s",%s' % (
                    output_id.encode(),
                    orjson.dumps(change.segment),
                    change.change.encode(),
                    shared,
                )
                yield OutputRecord(topic, partition, key, value, ((ID_HEADER, output_id.encode()),), output_id)

    def _record(self, topic: str, partition: int, user_id: str, value: bytes, output_id: str) -> OutputRecord:
        return OutputRecord(topic, partition, user_id.encode(), value, ((ID_HEADER, output_id.encode()),), output_id)

    def _dead_letter_record(self, dead: DeadLetter) -> OutputRecord:
        source = dead.record
        # A timer firing has no offset (-1); its record names the user and the instant.
        origin = str(source.offset) if source.offset >= 0 else f"{(source.key or b'').decode()}@{source.timestamp_ms}"
        output_id = f"{source.partition}:{origin}:{dead.kind}"
        headers = (
            (ID_HEADER, output_id.encode()),
            ("tidemail.kind", dead.kind.encode()),
            ("tidemail.reason", dead.reason.encode()),
            ("tidemail.source.topic", self._topics.events.encode()),
            ("tidemail.source.partition", str(source.partition).encode()),
            ("tidemail.source.offset", str(source.offset).encode()),
        )
        # The original bytes travel unchanged so a fixed record can be replayed as it was.
        return OutputRecord(self._topics.dead_letters, source.partition, source.key, source.value, headers, output_id)


def _evaluation_of(item: tuple[int, SegmentChange]) -> tuple[str, int, str, str]:
    change = item[1]
    return change.user_id, change.at_ms, change.cause, change.definition_version
