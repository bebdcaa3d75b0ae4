"""What `tidemail bench` tells of the models: the size of their per-user state after a
generated stream through the real processor, and an item model trained beforehand for
the hot path's contenders."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import orjson

from app.tools.eval_reco import Scoreboard
from app.tools.generator import EventGenerator
from models.item_trainer import ItemTrainer
from models.reco import DEFAULT_WEIGHTS, ItemModel
from streams.core.errors import InvalidEvent
from streams.core.events import Event, parse_event
from streams.core.learning import interactions_of

START_MS = 1_795_852_800_000


@dataclass(frozen=True, slots=True)
class StateSizes:
    users: int
    mean_bytes: float
    p99_bytes: int
    max_bytes: int


def model_state_sizes(users: int, events: int, seed: int) -> StateSizes:
    """JSON bytes of every model's per-user part after `events` generated events."""
    import statistics

    from app.faust_app import build_processor
    from app.settings import Settings
    from streams.core.batch import InputRecord
    from streams.core.clock import Clock
    from streams.core.state import UserState
    from streams.core.state_codec import tuple_as_list

    # No trigger age limit: the events are dated from a fixed day (START_MS), and the
    # experiment sends of the flows they trigger are part of what is measured.
    processor = build_processor(replace(Settings.from_env(), max_trigger_age=""), Clock())
    trainer = _trainer()
    states: dict[str, UserState] = {}
    records = [
        InputRecord(0, offset, key, value, 0) for offset, (key, value) in enumerate(_messages(users, events, seed))
    ]
    for start in range(0, len(records), 2_000):
        result = processor.process({0: records[start : start + 2_000]}, lambda _, user: states.get(user))
        states.update(result.changes.states.get(0, {}))
        trainer.learn_record(result.training, 0)
        processor.item_model = trainer.export()
    sizes = sorted(
        len(
            orjson.dumps(
                [s.recent_interactions, s.engagement_hours, s.propensity_probe, s.experiment_jobs],
                default=tuple_as_list,
            )
        )
        for s in states.values()
    )
    return StateSizes(len(sizes), statistics.mean(sizes), sizes[int(len(sizes) * 0.99)], sizes[-1])


def report_models(sizes: StateSizes, board: Scoreboard) -> str:
    """Per-user model state, and the recommenders on a short long-tail stream (`tidemail eval`
    runs the full comparison)."""
    blend, popular, item = (
        board.tally("new", name) for name in ("tidemail blend", "decayed popularity", "item-to-item")
    )
    return "\n".join(
        [
            f"recommendations, prequential hit-rate@10 on {blend.predictions:,} first touches of products new to "
            f"the user ({board.world} world, {board.events:,} events, seed {board.seed}; `tidemail eval` for all):",
            f"  blend {blend.hit_rate:.1%}, decayed popularity {popular.hit_rate:.1%}, "
            f"item-to-item {item.hit_rate:.1%}",
            f"model state per user ({sizes.users:,} users): mean {sizes.mean_bytes:.0f} B, "
            f"p99 {sizes.p99_bytes} B, max {sizes.max_bytes} B (target < 1 KB)",
        ]
    )


def trained_item_model(users: int, events: int, seed: int) -> ItemModel:
    """An item model trained on generated events, as a trainer would publish it."""
    trainer = _trainer()
    for event in _events(users, events, seed):
        for interaction, product in interactions_of(event, DEFAULT_WEIGHTS):
            trainer.learn_one((interaction, product))
    return trainer.export()


def _trainer() -> ItemTrainer:
    return ItemTrainer(half_life_days=14, capacity=5_000)


def _messages(users: int, events: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """The first `events` generated messages, one session a second from START_MS."""
    clock = iter(range(START_MS, START_MS + events * 1_000, 1_000))
    stream = EventGenerator(users, seed, broken_share=0.0).messages(clock_ms=lambda: next(clock))
    return itertools.islice(stream, events)


def _events(users: int, events: int, seed: int) -> Iterator[Event]:
    for key, value in _messages(users, events, seed):
        try:
            yield parse_event(value, key, 65_536)
        except InvalidEvent:
            continue
