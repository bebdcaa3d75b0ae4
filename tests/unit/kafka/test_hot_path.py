from typing import Any

from streams.core.clock import Clock
from streams.kafka.hot_path import HotPath


async def test_a_hot_path_that_never_started_stops_without_error() -> None:
    # What a worker does when its start fails before the hot path's (its web port taken):
    # the error to report is the port, not a missing Kafka client.
    unused: Any = None
    hot_path = HotPath(
        bootstrap="localhost:1",
        group_id="tidemail-test",
        events_topic="events",
        jobs_topic="jobs",
        dead_letter_topic="dead-letter",
        segment_changes_topic="segment-changes",
        interactions_topic="interactions",
        store=unused,
        processor=unused,
        cache=unused,
        batch_max_records=100,
        batch_timeout_ms=100,
        clock=Clock(),
        timer_interval_ms=200,
        timer_batch_users=100,
    )
    await hot_path.on_stop()
