"""Prequential quality of the recommender on the generator's planted taste groups.

Every click and purchase is first predicted, then learned: was its product in the
user's top 10 just before? Three recommenders see the same stream in the same run:
the fleet design (the trainer's item snapshots, user vectors folded in on the worker),
one BiasedMF model trained on all traffic with its own user vectors, and popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.generator import EventGenerator
from models.reco import DEFAULT_WEIGHTS, ItemModel, ItemTrainer, interactions_of, recommend, remember
from streams.errors import InvalidEvent
from streams.events import parse_event

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
    trainer = ItemTrainer(n_factors=16, half_life_days=14, capacity=5_000, seed=seed)
    snapshot = ItemModel.empty(16)
    histories: dict[str, list[object]] = {}
    bought: dict[str, list[str]] = {}
    counts = {"predictions": 0, "fleet": 0, "single": 0, "popular": 0}
    offset = 0
    clock = iter(range(START_MS, START_MS + events * 1_000, 1_000))  # a session a second
    stream = EventGenerator(users, seed, broken_share=0.0).messages(clock_ms=lambda: next(clock))
    for n, (key, value) in enumerate(stream):
        if n >= events:
            break
        try:
            event = parse_event(value, key, 65_536)
        except InvalidEvent:
            continue
        for interaction, product in interactions_of(event, DEFAULT_WEIGHTS):
            user = interaction.user_id
            owned = frozenset(bought.get(user, ()))
            if event.type in ("click", "purchase") and interaction.sku not in owned:
                counts["predictions"] += 1
                fleet = recommend(histories.get(user, []), snapshot, K, owned, bought.get(user, []))
                counts["fleet"] += interaction.sku in {r.sku for r in fleet}
                counts["single"] += interaction.sku in _single_model_top(trainer, user, owned)
                counts["popular"] += interaction.sku in [s for s in snapshot.popular if s not in owned][:K]
            trainer.learn(interaction, product, offset)
            offset += 1
            histories[user] = remember(histories.get(user, []), interaction)
            if event.type == "purchase":
                bought.setdefault(user, []).append(interaction.sku)
            if offset % snapshot_every == 0:
                snapshot = trainer.snapshot()
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
