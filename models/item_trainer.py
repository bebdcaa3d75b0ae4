"""The one owner of item knowledge: a trainer fed every interaction of the fleet in
order, which publishes what it knows as `ItemModel` snapshots.

River cannot merge models, and shards trained on a part of the traffic each lose most
of the quality of one model. So the `ItemTrainer` is fed through a one-partition topic
(Kafka's group protocol elects the worker that runs it, and moves it on failure). It
trains River's `BiasedMF` on implicit feedback (an interaction's weight as the target,
one sampled unseen item at zero) and keeps time-decayed popularity, "bought together"
counts, the catalogue of known products, the fleet's engagement by hour of the week,
the propensity models and the experiments' bandits beside it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np
from river import optim, reco

from models.bandits import BanditTrainer
from models.base import Exportable, Learner
from models.interactions import InteractionExample, Product, implicit_target
from models.popularity import Popularity
from models.propensity import PropensitySnapshot, PropensityTrainer
from models.reco import ItemModel
from models.send_time import HOURS_PER_WEEK
from models.training import TrainingBatch

LEARNING_RATE = 0.05
L2 = 0.01
TOGETHER_KEPT = 10


class ItemTrainer(Learner[InteractionExample], Exportable[ItemModel]):
    """The one model over all traffic; `export()` is the snapshot every worker ranks with.

    >>> from models.interactions import Interaction, Product
    >>> trainer = ItemTrainer(n_factors=4, half_life_days=14, capacity=100)
    >>> trainer.learn_one((Interaction("u1", "TENT", 8.0, 0), Product("TENT", "Tent", "outdoor", 99.0)))
    >>> trainer.learn_one((Interaction("u2", "MUG", 1.0, 0), None))
    >>> snapshot = trainer.export()
    >>> snapshot.skus, [pick.sku for pick in snapshot.predict_top([], 3)]
    (['TENT', 'MUG'], ['TENT'])
    """

    def __init__(self, n_factors: int, half_life_days: float, capacity: int, seed: int = 7) -> None:
        self._n_factors = n_factors
        self._model = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(LEARNING_RATE / 5),
            latent_optimizer=optim.SGD(LEARNING_RATE),
            l2_bias=L2 / 10,
            l2_latent=L2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self._rng = random.Random(seed)
        self._popularity = Popularity(half_life_days, capacity)
        self._bought_with: dict[str, dict[str, float]] = defaultdict(dict)
        self._orders: dict[str, list[str]] = {}
        self._skus: list[str] = []
        self._known: set[str] = set()
        self.offset = 0
        self.last_ms = 0
        self._send_hours = [0.0] * HOURS_PER_WEEK
        self._propensity = PropensityTrainer()
        self._bandits = BanditTrainer()
        self._unavailable: set[str] = set()

    def learn_record(self, batch: TrainingBatch, offset: int) -> None:
        """The training record at `offset` of the interactions topic: its interactions,
        opens and clicks by local hour, propensity examples, and experiment records."""
        self.learn_many(batch.interactions)
        for hour in batch.engagement_hours:
            self._send_hours[hour] += 1.0
        self._propensity.learn_many(batch.propensity_examples)
        self._bandits.learn_many(batch.bandit_records)
        self.offset = offset + 1

    def learn_one(self, example: InteractionExample, /) -> None:
        interaction, product = example
        sku = interaction.sku
        if product is not None or sku in self._known:
            self._popularity.learn_one(example)
        self._add_sku(sku)
        target = implicit_target(interaction.weight)
        self._model.learn_one(interaction.user_id, sku, target)  # type: ignore[no-untyped-call]
        negative = self._sample_other(sku)
        if negative is not None:
            self._model.learn_one(interaction.user_id, negative, 0.0)  # type: ignore[no-untyped-call]
        if interaction.order_id is not None:
            self._learn_basket(interaction.order_id, sku)
        self.last_ms = max(self.last_ms, interaction.timestamp_ms)

    def update_catalog(self, sku: str, entry: dict[str, Any] | None) -> None:
        """A catalogue record: the product's details and whether it is for sale. A
        tombstone (None) withdraws the product."""
        if entry is None or not entry.get("available", True):
            self._unavailable.add(sku)
        else:
            self._unavailable.discard(sku)
        if entry is not None:
            self._popularity.describe(Product(sku, entry["name"], entry["category"], float(entry["price"])))

    def export(self) -> ItemModel:
        skus = [sku for sku in self._skus if sku in self._model.i_latents]
        factors = np.array([self._model.i_latents[sku] for sku in skus]) if skus else np.zeros((0, self._n_factors))
        biases = np.array([self._model.i_biases.get(sku, 0.0) for sku in skus])
        popularity = [(p.sku, score, touched) for p, score, touched in self._popularity.export(self.last_ms)]
        together = {
            sku: [other for other, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:TOGETHER_KEPT]]
            for sku, counts in self._bought_with.items()
        }
        propensity = self._propensity.export()
        return ItemModel(
            skus,
            factors,
            biases,
            self._model.global_mean.get(),
            popularity,
            together,
            self._popularity.products(),
            self.offset,
            send_hours=list(self._send_hours),
            propensity=propensity.scorers,
            propensity_quality=propensity.quality,
            bandits=self._bandits.export(),
            unavailable=frozenset(self._unavailable),
        )

    def restore(self, state: ItemModel, /) -> None:
        """Continue from a published snapshot: item knowledge is kept, user vectors relearn."""
        for i, sku in enumerate(state.skus):
            self._model.i_latents[sku] = state.factors[i].copy()
            self._model.i_biases[sku] = float(state.biases[i])
            self._add_sku(sku)
        self._model.global_mean.update(state.global_mean)
        self._popularity.restore([(state.products[sku], score, touched) for sku, score, touched in state.popularity])
        for sku, others in state.together.items():
            self._bought_with[sku] = {other: float(len(others) - rank) for rank, other in enumerate(others)}
        self._send_hours = list(state.send_hours)
        self._propensity.restore(PropensitySnapshot(state.propensity, state.propensity_quality))
        self._bandits.restore(state.bandits)
        self._unavailable = set(state.unavailable)
        self.offset = state.offset

    def _add_sku(self, sku: str) -> None:
        if sku not in self._known:
            self._known.add(sku)
            self._skus.append(sku)

    def _sample_other(self, sku: str) -> str | None:
        if len(self._skus) < 2:
            return None
        other = self._skus[self._rng.randrange(len(self._skus))]
        return other if other != sku else None

    def _learn_basket(self, order_id: str, sku: str) -> None:
        basket = self._orders.setdefault(order_id, [])
        for other in basket:
            self._bought_with[sku][other] = self._bought_with[sku].get(other, 0.0) + 1
            self._bought_with[other][sku] = self._bought_with[other].get(sku, 0.0) + 1
        basket.append(sku)
        if len(self._orders) > 10_000:  # baskets arrive together; old ones are complete
            del self._orders[next(iter(self._orders))]
