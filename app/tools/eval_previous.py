"""The recommender of the release before `tidemail eval`, kept here as the baseline it was
measured against: River's `BiasedMF` trained on implicit feedback (the interaction's
`log(1 + weight)` as the target, one sampled other product at zero), the user's vector
folded in against the item factors at ranking time (the ALS user step), then
bought-together rules, then popular products; only the cart and orders excluded.

Its factors learned mostly popularity (an item's bias tracks its count), and in the
blend they lowered the hit-rate on new products at every weight tried, so the shipped
recommender no longer has them (see docs/models.md, Why this blend).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from river import optim, reco

from models.interactions import InteractionExample, implicit_target
from models.ranking import first_offerable
from models.reco import History, ItemModel

N_FACTORS = 16
LEARNING_RATE = 0.05
L2 = 0.01
FOLD_IN_L2 = 2.0
MIN_INTERACTIONS_FOR_MODEL = 3


class PreviousRelease:
    """The previous release's factor model, learned beside the trainer."""

    def __init__(self, seed: int) -> None:
        self._model = reco.BiasedMF(
            n_factors=N_FACTORS,
            bias_optimizer=optim.SGD(LEARNING_RATE / 5),
            latent_optimizer=optim.SGD(LEARNING_RATE),
            l2_bias=L2 / 10,
            l2_latent=L2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self._rng = random.Random(seed)
        self._skus: list[str] = []
        self._known: set[str] = set()
        self.skus: list[str] = []
        self.index: dict[str, int] = {}
        self.factors = np.zeros((0, N_FACTORS))
        self.biases = np.zeros(0)
        self.global_mean = 0.0

    def learn_one(self, example: InteractionExample) -> None:
        interaction, _ = example
        sku = interaction.sku
        if sku not in self._known:
            self._known.add(sku)
            self._skus.append(sku)
        self._model.learn_one(interaction.user_id, sku, implicit_target(interaction.weight))  # type: ignore[no-untyped-call]
        other = self._skus[self._rng.randrange(len(self._skus))]
        if other != sku:
            self._model.learn_one(interaction.user_id, other, 0.0)  # type: ignore[no-untyped-call]

    def publish(self) -> None:
        """Take the factors as a snapshot would carry them."""
        self.skus = [sku for sku in self._skus if sku in self._model.i_latents]
        self.index = {sku: i for i, sku in enumerate(self.skus)}
        self.factors = np.array([self._model.i_latents[sku] for sku in self.skus]).reshape(-1, N_FACTORS)
        self.biases = np.array([self._model.i_biases.get(sku, 0.0) for sku in self.skus])
        self.global_mean = self._model.global_mean.get()

    def top(
        self, history: History, bought: Sequence[str], owned: frozenset[str], model: ItemModel, k: int
    ) -> list[str]:
        """The factor model's picks, then rules for what the user bought, then popular products."""
        picks = self._factor_top(history, k + len(owned))
        rules = (other for sku in reversed(bought) for other in model.together.get(sku, ()))
        return first_offerable([*picks, *rules, *model.popular[: k + len(owned)]], model, owned, k)

    def _factor_top(self, history: History, n: int) -> list[str]:
        known = [(self.index[sku], w) for sku, w in zip(history[::2], history[1::2], strict=True) if sku in self.index]
        if len(known) < MIN_INTERACTIONS_FOR_MODEL:
            return []
        rows = [row for row, _ in known]
        targets = np.array([implicit_target(weight) for _, weight in known])
        items = self.factors[rows]
        residual = targets - self.global_mean - self.biases[rows]
        vector = np.linalg.solve(items.T @ items + FOLD_IN_L2 * np.eye(N_FACTORS), items.T @ residual)
        scores = self.factors @ vector + self.biases
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        return [self.skus[i] for i in top[np.argsort(-scores[top])]]
