"""The training record: everything one worker batch teaches the trainer, as one record
on the interactions topic.

One record per batch rather than per interaction keeps the hot path's cost of feeding
the trainer to a few microseconds per event. On the wire it is a JSON array of four
arrays (interactions, engagement hours, propensity examples, experiment records), the
form trainers of earlier releases read, and a fifth, of users erased, in the records that
erased any (which trainers of earlier releases refuse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from models.bandits import BanditRecord
from models.base import Record
from models.interactions import Interaction, InteractionExample, Product
from models.propensity import PropensityExample

# About 450 KB at most: a propensity example is the largest item, ~450 bytes.
TRAINING_CHUNK_ITEMS = 1_000


@dataclass(slots=True)
class TrainingBatch(Record[list[Any]]):
    """What one worker batch saw: interactions, opens and clicks by local hour of the
    week, propensity examples, and experiment sends and rewards.

    >>> batch = TrainingBatch(engagement_hours=[33])
    >>> batch.to_bytes()
    b'[[],[33],[],[]]'
    >>> TrainingBatch.from_bytes(batch.to_bytes()) == batch
    True
    """

    interactions: list[InteractionExample] = field(default_factory=list)
    engagement_hours: list[int] = field(default_factory=list)
    propensity_examples: list[PropensityExample] = field(default_factory=list)
    bandit_records: list[BanditRecord] = field(default_factory=list)
    # Users erased (after this batch's interactions of theirs): the trainer forgets its part of each.
    forgotten: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.interactions
            or self.engagement_hours
            or self.propensity_examples
            or self.bandit_records
            or self.forgotten
        )

    def split(self, max_items: int = TRAINING_CHUNK_ITEMS) -> list[TrainingBatch]:
        """Pieces of at most `max_items` of each kind, so no record nears Kafka's 1 MB limit
        (a clock batch can close thousands of propensity probes at once). The users erased go
        with the last piece, after every interaction of theirs."""
        longest = max(
            len(self.interactions), len(self.engagement_hours), len(self.propensity_examples), len(self.bandit_records)
        )
        pieces = [
            TrainingBatch(
                self.interactions[start : start + max_items],
                self.engagement_hours[start : start + max_items],
                self.propensity_examples[start : start + max_items],
                self.bandit_records[start : start + max_items],
            )
            for start in range(0, longest, max_items)
        ]
        if self.forgotten:
            pieces = pieces or [TrainingBatch()]
            pieces[-1].forgotten = list(self.forgotten)
        return pieces

    def export(self) -> list[Any]:
        interactions = [
            [i.user_id, i.sku, i.weight, i.timestamp_ms, i.order_id, [p.name, p.category, p.price] if p else None]
            for i, p in self.interactions
        ]
        examples = [[x, outcomes] for x, outcomes in self.propensity_examples]
        bandit_records = [list(record) for record in self.bandit_records]
        exported = [interactions, self.engagement_hours, examples, bandit_records]
        return [*exported, self.forgotten] if self.forgotten else exported

    @classmethod
    def restore(cls, state: list[Any], /) -> TrainingBatch:
        interactions, hours, examples, bandit_records, *forgotten = state
        return cls(
            [
                (
                    Interaction(user_id, sku, float(weight), int(ts), order_id),
                    Product(sku, details[0], details[1], float(details[2])) if details else None,
                )
                for user_id, sku, weight, ts, order_id, details in interactions
            ],
            hours,
            [(x, outcomes) for x, outcomes in examples],
            [BanditRecord(*record) for record in bandit_records],
            forgotten[0] if forgotten else [],
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.export())

    @classmethod
    def from_bytes(cls, raw: bytes) -> TrainingBatch:
        return cls.restore(orjson.loads(raw))
