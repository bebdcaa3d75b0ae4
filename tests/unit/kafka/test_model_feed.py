"""Reading item-model snapshots off the snapshot topic, without a broker."""

from __future__ import annotations

import zlib
from types import SimpleNamespace
from typing import Any

from models.interactions import Interaction
from models.item_trainer import ItemTrainer
from streams.kafka.model_feed import SnapshotFeed, snapshot_from_record
from tests.factories import BASE_TS


def record(value: bytes, offset: int) -> Any:
    return SimpleNamespace(value=value, offset=offset)


def test_a_snapshot_takes_its_offset_as_version() -> None:
    trainer = ItemTrainer(half_life_days=7, capacity=50)
    trainer.learn_many([(Interaction(f"u{n % 3}", f"S{n % 4}", 2.0, BASE_TS + n, None), None) for n in range(20)])
    model = snapshot_from_record(record(trainer.export().to_bytes(), 7))
    assert model is not None
    assert model.version == 7


def test_an_unreadable_snapshot_is_skipped_not_fatal() -> None:
    for value in (b"not zlib", zlib.compress(b"[1, 2]"), zlib.compress(b'{"skus": []}'), b""):
        assert snapshot_from_record(record(value, 8)) is None


async def test_a_feed_that_never_started_stops_without_error() -> None:
    # A worker whose start failed before the feed's (its web port taken) stops it too:
    # the error to report is the port, not a missing consumer.
    unused: Any = None
    feed = SnapshotFeed(bootstrap="localhost:1", item_model_topic="item-model", processor=unused)
    await feed.on_stop()
