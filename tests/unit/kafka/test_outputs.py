from __future__ import annotations

import orjson
import pytest

from streams.core.batch import BatchResult, DeadLetter, InputRecord, Reroute
from streams.core.jobs import format_time
from streams.core.partitioning import REROUTED_FROM_HEADER
from streams.core.segments import Transitions, change_id, evaluation_id
from streams.kafka.outputs import ID_HEADER, OutputPublisher, OutputTopics, rerouted_records
from streams.kafka.produce import send_grouped
from streams.kafka.store import Checkpoint
from tests.unit.kafka.fakes import FakeProducer

TOPICS = OutputTopics("events", "jobs", "changes", "dead", "erasures")


async def publish(publisher: OutputPublisher, producer: FakeProducer, result: BatchResult) -> dict[int, dict[str, int]]:
    """Send the records as the committer does; per partition, each output topic's next offset."""
    ends: dict[int, dict[str, int]] = {}
    for (topic, partition), end in (await send_grouped(producer, publisher.records(result))).items():  # type: ignore[arg-type]
        ends.setdefault(partition, {})[topic] = end
    return ends


def batch_result() -> BatchResult:
    trigger = InputRecord(3, 41, b"u1", b"{}", 0)
    result = BatchResult()
    result.outputs.jobs = [{"job_id": "j1", "user_id": "u1"}]
    result.outputs.job_triggers = {"j1": trigger}
    result.outputs.segment_transitions = [(3, Transitions("u1", 0, "e1", "v1", entered=["vip"]))]
    result.outputs.dead_letters = [DeadLetter(InputRecord(5, 7, b"x", b"{bad", 0), "invalid_event", "not JSON")]
    return result


async def test_outputs_go_to_the_input_partition_with_their_ids() -> None:
    producer = FakeProducer()
    ends = await publish(OutputPublisher("unused", TOPICS, max_record_bytes=10_000), producer, batch_result())
    placed = {
        (topic, partition): [
            r["headers"].get(ID_HEADER) or orjson.loads(r["value"])["change_id"] for r in batch.records
        ]
        for topic, partition, batch in producer.sent
    }
    vip_entered = change_id(evaluation_id("u1", "e1", 0), "vip", "entered")
    assert placed == {("jobs", 3): [b"j1"], ("changes", 3): [vip_entered], ("dead", 5): [b"5:7:invalid_event"]}
    assert ends == {3: {"jobs": 1, "changes": 1}, 5: {"dead": 1}}


async def test_ids_published_before_a_crash_are_not_published_again() -> None:
    producer = FakeProducer()
    publisher = OutputPublisher("unused", TOPICS, max_record_bytes=10_000)
    publisher._published[3] = {"j1", change_id(evaluation_id("u1", "e1", 0), "vip", "entered")}
    await publish(publisher, producer, batch_result())
    assert {topic for topic, _, _ in producer.sent} == {"dead"}
    assert publisher.suppressed == 2


async def test_a_job_too_large_for_kafka_is_dead_lettered_with_its_trigger() -> None:
    producer = FakeProducer()
    result = batch_result()
    result.outputs.jobs = [{"job_id": "j1", "user_id": "u1", "html": "x" * 500}]
    await publish(OutputPublisher("unused", TOPICS, max_record_bytes=100), producer, result)
    dead = [r for topic, _, batch in producer.sent if topic == "dead" for r in batch.records]
    kinds = sorted(r["headers"]["tidemail.kind"] for r in dead)
    assert kinds == [b"invalid_event", b"job_too_large"]
    assert b"3:41:job_too_large" in {r["headers"][ID_HEADER] for r in dead}
    assert [d.kind for d in result.outputs.dead_letters] == ["invalid_event", "job_too_large"]


async def test_full_batches_are_split_and_offsets_still_add_up() -> None:
    producer = FakeProducer(batch_limit=2)
    result = BatchResult()
    result.outputs.segment_transitions = [(0, Transitions("u1", 0, "e", "v", entered=[f"s{n}" for n in range(5)]))]
    ends = await publish(OutputPublisher("unused", TOPICS, max_record_bytes=10_000), producer, result)
    assert [len(batch.records) for _, _, batch in producer.sent] == [2, 2, 1]
    assert ends == {0: {"changes": 5}}


async def test_segment_changes_carry_every_documented_field_and_their_own_ids() -> None:
    producer = FakeProducer()
    result = BatchResult()
    first = Transitions("u1", 1_795_860_000_123, "e1", "v1", entered=["vip"], exited=["lapsed"])
    second = Transitions("u2", 1_795_860_000_124, "e2", "v1", entered=["vip"])
    result.outputs.segment_transitions = [(0, first), (0, second)]
    await publish(OutputPublisher("unused", TOPICS, max_record_bytes=10_000), producer, result)
    records = [r for _, _, batch in producer.sent for r in batch.records]
    expected = [
        (moved, segment, change)
        for moved in (first, second)
        for change, segments in moved.by_change()
        for segment in segments
    ]
    assert [orjson.loads(r["value"]) for r in records] == [
        {
            "change_id": change_id(moved.evaluation_id, segment, change),
            "user_id": moved.user_id,
            "segment": segment,
            "change": change,
            "at": format_time(moved.at_ms),
            "cause": moved.cause,
            "definition_version": moved.definition_version,
        }
        for moved, segment, change in expected
    ]
    assert [(r["key"], r["headers"]) for r in records] == [(moved.user_id.encode(), {}) for moved, _, _ in expected]
    assert len({orjson.loads(r["value"])["change_id"] for r in records}) == 3


def test_checkpoints_round_trip_and_bare_offsets_still_read() -> None:
    checkpoint = Checkpoint(41, {"jobs": 7}).advanced(None, {"changes": 3})
    assert Checkpoint.decode(checkpoint.encode()) == Checkpoint(41, {"jobs": 7, "changes": 3})
    assert Checkpoint.decode(b"12") == Checkpoint(12, {})


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_795_852_800_007, "2026-11-28T08:00:00.007Z"),
        # Exact to the millisecond where a float division would round down.
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_times_are_rfc3339_utc_with_milliseconds(millis: int, text: str) -> None:
    assert format_time(millis) == text


def test_rerouted_events_keep_key_value_and_headers_and_name_their_origin() -> None:
    keyed = InputRecord(2, 40, b"u1", b'{"a":1}', 0, [("trace", b"t")])
    keyless = InputRecord(2, 41, None, b'{"b":2}', 0)
    grouped = rerouted_records("events", [Reroute(keyed, "u1", 5), Reroute(keyless, "u9", 6)])
    assert grouped == {
        ("events", 5): [(b"u1", b'{"a":1}', [("trace", b"t"), (REROUTED_FROM_HEADER, b"events:2:40")])],
        ("events", 6): [(b"u9", b'{"b":2}', [(REROUTED_FROM_HEADER, b"events:2:41")])],
    }
