"""Prequential quality of the recommender on the generator's planted taste groups.

Every click and purchase is first predicted, then learned: was its product in the
user's top 10 just before? Three recommenders see the same stream in the same run:
the fleet design (the trainer's item snapshots, user vectors folded in on the worker),
one BiasedMF model trained on all traffic with its own user vectors, and popularity.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from app.tools.generator import EventGenerator
from models.item_trainer import ItemTrainer
from models.reco import DEFAULT_WEIGHTS, ItemModel, remember
from streams.core.errors import InvalidEvent
from streams.core.events import Event, parse_event
from streams.core.learning import interactions_of

K = 10
START_MS = 1_795_852_800_000


@dataclass(frozen=True, slots=True)
class Quality:
    predictions: int
    fleet_hits: int
    single_hits: int
    popular_hits: int

    def rate(self, hits: int) -> float:
        return hits / self.predictions if self.predictions else 0.0


def prequential_quality(users: int, events: int, seed: int, snapshot_every: int = 2_000) -> Quality:
    trainer = _trainer(seed)
    snapshot = ItemModel.empty(16)
    histories: dict[str, list[object]] = {}
    bought: dict[str, list[str]] = {}
    counts = {"predictions": 0, "fleet": 0, "single": 0, "popular": 0}
    offset = 0
    for event in _events(users, events, seed):
        for interaction, product in interactions_of(event, DEFAULT_WEIGHTS):
            user = interaction.user_id
            owned = frozenset(bought.get(user, ()))
            if event.type in ("click", "purchase") and interaction.sku not in owned:
                counts["predictions"] += 1
                fleet = snapshot.predict_top(histories.get(user, []), K, owned, bought.get(user, []))
                counts["fleet"] += interaction.sku in {r.sku for r in fleet}
                counts["single"] += interaction.sku in _single_model_top(trainer, user, owned)
                counts["popular"] += interaction.sku in [s for s in snapshot.popular if s not in owned][:K]
            trainer.learn_one((interaction, product))
            offset += 1
            histories[user] = remember(histories.get(user, []), interaction)
            if event.type == "purchase":
                bought.setdefault(user, []).append(interaction.sku)
            if offset % snapshot_every == 0:
                snapshot = trainer.export()
    return Quality(counts["predictions"], counts["fleet"], counts["single"], counts["popular"])


def _single_model_top(trainer: ItemTrainer, user: str, owned: frozenset[str]) -> set[str]:
    model = trainer._model  # the trainer's own BiasedMF: one model over all traffic
    if user not in model.u_latents:  # asking River about an unknown user would add one
        return set()
    skus = [sku for sku in trainer._skus if sku in model.i_latents and sku not in owned]
    if not skus:
        return set()
    scores = np.array([model.i_latents[s] for s in skus]) @ model.u_latents[user] + np.array(
        [model.i_biases.get(s, 0.0) for s in skus]
    )
    return {skus[i] for i in np.argsort(-scores)[:K]}


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
    from streams.core.state import UserState, tuple_as_list

    processor = build_processor(Settings.from_env(), Clock())
    trainer = _trainer(seed)
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


def report_models(quality: Quality, sizes: StateSizes) -> str:
    fleet, single, popular = (quality.rate(h) for h in (quality.fleet_hits, quality.single_hits, quality.popular_hits))
    return "\n".join(
        [
            f"recommendations, prequential hit-rate@10 over {quality.predictions:,} clicks and purchases "
            "on planted taste groups:",
            f"  fleet design {fleet:.1%}, one model over all traffic {single:.1%}, popularity {popular:.1%}",
            f"  fleet / one model {fleet / single:.2f} (target >= 0.95), fleet / popularity {fleet / popular:.1f}x "
            "(target >= 2)",
            f"model state per user ({sizes.users:,} users): mean {sizes.mean_bytes:.0f} B, "
            f"p99 {sizes.p99_bytes} B, max {sizes.max_bytes} B (target < 1 KB)",
        ]
    )


def trained_item_model(users: int, events: int, seed: int) -> ItemModel:
    """An item model trained on generated events, as a trainer would publish it."""
    trainer = _trainer(seed)
    for event in _events(users, events, seed):
        for interaction, product in interactions_of(event, DEFAULT_WEIGHTS):
            trainer.learn_one((interaction, product))
    return trainer.export()


def _trainer(seed: int) -> ItemTrainer:
    return ItemTrainer(n_factors=16, half_life_days=14, capacity=5_000, seed=seed)


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
