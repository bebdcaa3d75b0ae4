"""The protocol every model here keeps, in River's vocabulary.

A learner learns from one example (`learn_one`) or from many in order (`learn_many`);
a predictor answers with a `predict_*` method; learned state leaves as plain data with
`export()` and comes back with `restore(...)`. A learner restores in place, since it
carries its own settings (factors, half-life); an immutable value (the item snapshot,
a scorer, a training record) is built again by its class. What travels on a topic is
also a `Record`: `to_bytes()` and `from_bytes(...)`. Every model names its
protocols as base classes, and `tests/unit/models/test_model_contracts.py` runs each
through them the way River's `check_estimator` does.

>>> from models.bandits import BanditRecord, BanditTrainer
>>> trainer = BanditTrainer()
>>> trainer.learn_many([BanditRecord("sent", "subject", "a", None, False)])
>>> copy = BanditTrainer()
>>> copy.restore(trainer.export())
>>> copy.export() == trainer.export()
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, Self, TypeVar

X_contra = TypeVar("X_contra", contravariant=True)
Q_contra = TypeVar("Q_contra", contravariant=True)
R = TypeVar("R")
S = TypeVar("S")


class Learner(Protocol[X_contra]):
    """Learns from examples in the order they happened."""

    __slots__ = ()

    def learn_one(self, x: X_contra, /) -> None: ...

    def learn_many(self, xs: Iterable[X_contra], /) -> None:
        """The same as `learn_one` on each example, in order."""
        for x in xs:
            self.learn_one(x)


class Exportable(Protocol[S]):
    """A learner whose learned state leaves as plain data, and which continues from such
    data as if it had learned it itself."""

    __slots__ = ()

    def export(self) -> S: ...

    def restore(self, state: S, /) -> None: ...


class Value(Protocol[S]):
    """An immutable value with a plain-data form: `export()` gives it, and the class's
    `restore` builds the same value back from it."""

    __slots__ = ()

    def export(self) -> S: ...

    @classmethod
    def restore(cls, state: S, /) -> Self: ...


class Record(Value[S], Protocol[S]):
    """A value that travels on a Kafka topic, as bytes made from its exported form."""

    __slots__ = ()

    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, raw: bytes, /) -> Self: ...


class Classifier(Protocol[X_contra]):
    """Scores an example with the chance that it is positive."""

    __slots__ = ()

    def predict_proba_one(self, x: X_contra, /) -> float: ...


class Ranker(Protocol[Q_contra, R]):
    """Ranks what it knows for a query, best first."""

    __slots__ = ()

    def predict_top(self, query: Q_contra, k: int, /) -> list[R]: ...
