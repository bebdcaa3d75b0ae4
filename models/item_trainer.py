"""The one owner of item knowledge: a trainer fed every interaction of the fleet in
order, which publishes what it knows as `ItemModel` snapshots.

What users touch after what can only be counted over all of them: shards trained on a
part of the traffic would each see a part of every product's successors. So the
`ItemTrainer` is fed through a one-partition topic (Kafka's group protocol elects the
process that runs it, and moves it on failure). It learns what users touch after what
and buy with or after what (`models.transitions`), time-decayed popularity and the
catalogue of known products, and keeps the fleet's engagement by hour of the week, the
propensity models and the experiments' bandits beside them.
"""

from __future__ import annotations

from typing import Any

from models.bandits import BanditTrainer
from models.base import Exportable, Learner
from models.interactions import InteractionExample, Product
from models.popularity import Popularity
from models.propensity import PropensitySnapshot, PropensityTrainer
from models.reco import ItemModel
from models.send_time import HOURS_PER_WEEK
from models.training import TrainingBatch
from models.transitions import Transitions


class ItemTrainer(Learner[InteractionExample], Exportable[ItemModel]):
    """The one model over all traffic; `export()` is the snapshot every worker ranks with.

    >>> from models.interactions import Interaction, Product
    >>> trainer = ItemTrainer(half_life_days=14, capacity=100)
    >>> trainer.learn_one((Interaction("u1", "TENT", 8.0, 0), Product("TENT", "Tent", "outdoor", 99.0)))
    >>> trainer.learn_one((Interaction("u1", "PEGS", 8.0, 0), Product("PEGS", "Pegs", "outdoor", 5.0)))
    >>> snapshot = trainer.export()
    >>> snapshot.popular, [pick.sku for pick in snapshot.predict_top(["TENT", 8.0], 3)]
    (['TENT', 'PEGS'], ['PEGS'])
    """

    def __init__(self, half_life_days: float, capacity: int) -> None:
        self._popularity = Popularity(half_life_days, capacity)
        self._transitions = Transitions(half_life_days)
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
        self._popularity.learn_one(example)
        self._transitions.learn_one(example)
        self.last_ms = max(self.last_ms, example[0].timestamp_ms)

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
        popularity = [(p.sku, score, touched) for p, score, touched in self._popularity.export(self.last_ms)]
        transitions = self._transitions.export()
        together = {sku: [other for other, _ in others] for sku, others in transitions.together.items()}
        propensity = self._propensity.export()
        return ItemModel(
            popularity,
            together,
            self._popularity.products(),
            self.offset,
            send_hours=list(self._send_hours),
            propensity=propensity.scorers,
            propensity_quality=propensity.quality,
            bandits=self._bandits.export(),
            unavailable=frozenset(self._unavailable),
            transitions=transitions,
        )

    def restore(self, state: ItemModel, /) -> None:
        """Continue from a published snapshot: the users' latest products relearn."""
        self._popularity.restore([(state.products[sku], score, touched) for sku, score, touched in state.popularity])
        self._transitions.restore(state.transitions)
        self._send_hours = list(state.send_hours)
        self._propensity.restore(PropensitySnapshot(state.propensity, state.propensity_quality))
        self._bandits.restore(state.bandits)
        self._unavailable = set(state.unavailable)
        self.offset = state.offset
