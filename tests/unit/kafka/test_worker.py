from typing import Any

from streams.core.clock import Clock
from streams.kafka.outputs import OutputTopics
from streams.kafka.worker import BatchWorker, WorkerConfig


async def test_a_worker_that_never_started_stops_without_error() -> None:
    # What a worker does when its start fails before the batch worker's (its web port taken):
    # the error to report is the port, not a missing Kafka client.
    unused: Any = None
    config = WorkerConfig(
        bootstrap="localhost:1",
        group_id="tidemail-test",
        topics=OutputTopics(
            events="events",
            jobs="jobs",
            segment_changes="segment-changes",
            dead_letters="dead-letter",
            erasures="erasures",
        ),
        interactions_topic="interactions",
        batch_max_records=100,
        batch_timeout_ms=100,
        timer_interval_ms=200,
        timer_batch_users=100,
    )
    worker = BatchWorker(config=config, store=unused, processor=unused, cache=unused, clock=Clock())
    await worker.on_stop()
