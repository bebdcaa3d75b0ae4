"""The contract every model here keeps, checked the way River's `check_estimator` checks
an estimator: each model below goes through every check its protocols call for.

Learners (`Learner` + `Exportable`): learning does not mutate its input, `learn_many` is
`learn_one` in order, export is plain data, a restored learner predicts what the
original does, a learner restored from a fresh one's export still learns, state
survives pickling, and instances share no mutable state. Values (`Value`, `Record`):
export is plain data and a fixed point of restore, bytes round trip, an empty value
works, pickling keeps predictions, instances share no mutable state. A class under
`models/` that learns, exports or predicts without a case here fails the suite.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np
import orjson
import pytest

import models
from models import interests, propensity, reco, send_time
from models.bandits import BanditRecord, BanditTrainer, Experiment, choose_variant, posteriors_of, report
from models.base import Exportable, Learner, Record, Value
from models.interactions import Interaction, Product
from models.item_trainer import ItemTrainer
from models.popularity import Popularity
from models.propensity import FEATURES, Probe, PropensityTrainer, Scorer
from models.reco import ItemModel
from models.training import TrainingBatch
from models.transitions import Transitions
from tests.factories import BASE_TS

HISTORIES = [[value for n in range(4) for value in (f"S{(u + n) % 6}", 2.0)] for u in range(3)]
FEATURE_ROWS = [{}, {"page_view_7d": 1.0}, {"page_view_7d": 3.0, "mobile": 1.0, "never_seen": 9.0}]
EXPERIMENT = Experiment("e", "welcome", ("a", "b"))


def interaction_examples() -> list[tuple[Interaction, Product | None]]:
    return [
        (
            Interaction(f"u{n % 5}", f"S{n % 6}", 2.0, BASE_TS + n, f"o{n // 3}" if n % 4 == 0 else None),
            Product(f"S{n % 6}", "s", f"c{n % 2}", 1.0) if n % 3 else None,
        )
        for n in range(40)
    ]


def propensity_examples() -> list[tuple[dict[str, float], list[str]]]:
    return [({"page_view_7d": float(n % 4), "mobile": float(n % 2)}, ["open"] if n % 4 else []) for n in range(50)]


def bandit_records() -> list[BanditRecord]:
    sends = [BanditRecord("sent", "e", "ab"[n % 2], None, False) for n in range(12)]
    return [
        *sends,
        BanditRecord("reward", "e", "a", "email_open", True),
        BanditRecord("reward", "e", "a", "purchase", False),
    ]


def new_item_trainer() -> ItemTrainer:
    return ItemTrainer(half_life_days=7, capacity=50)


def ranked_items(trainer: ItemTrainer) -> Any:
    return ranked_snapshot(trainer.export())


def ranked_snapshot(model: ItemModel) -> Any:
    return [model.predict_top(history, 3, bought=["S1"]) for history in HISTORIES], model.popular


def propensity_predictions(trainer: PropensityTrainer) -> Any:
    return scorer_predictions(trainer.export().scorers)


def scorer_predictions(scorers: dict[str, Scorer]) -> Any:
    return {target: [s.predict_proba_one(x) for x in FEATURE_ROWS] for target, s in scorers.items()}


def bandit_predictions(trainer: BanditTrainer) -> Any:
    exported = trainer.export()
    choices = [choose_variant(EXPERIMENT, posteriors_of(exported, "e"), f"job-{n}") for n in range(20)]
    return choices, report(EXPERIMENT, exported)


def popular_products(popularity: Popularity) -> Any:
    return popularity.predict_top(BASE_TS + 100, 5), popularity.predict_top(BASE_TS + 100, 5, category="c1")


@dataclass(frozen=True)
class LearnerCase:
    make: Callable[[], Any]
    examples: Callable[[], list[Any]]
    predict: Callable[[Any], Any]
    # Whether restoring a fresh learner's export leaves it as fresh.
    empty_restore_is_fresh: bool = True


@dataclass(frozen=True)
class ValueCase:
    sample: Callable[[], Any]
    empty: Callable[[], Any]
    predict: Callable[[Any], Any]


LEARNERS: dict[type[Any], LearnerCase] = {
    ItemTrainer: LearnerCase(new_item_trainer, interaction_examples, ranked_items),
    Transitions: LearnerCase(lambda: Transitions(half_life_days=7), interaction_examples, lambda t: t.export()),
    Popularity: LearnerCase(lambda: Popularity(half_life_days=7, capacity=5), interaction_examples, popular_products),
    PropensityTrainer: LearnerCase(PropensityTrainer, propensity_examples, propensity_predictions),
    BanditTrainer: LearnerCase(BanditTrainer, bandit_records, bandit_predictions),
}


def trained(case: LearnerCase) -> Any:
    model = case.make()
    model.learn_many(case.examples())
    return model


VALUES: dict[type[Any], ValueCase] = {
    ItemModel: ValueCase(lambda: trained(LEARNERS[ItemTrainer]).export(), ItemModel.empty, ranked_snapshot),
    Scorer: ValueCase(
        lambda: Scorer({"page_view_7d": 1.0, "mobile": 0.5}, {"page_view_7d": 4.0}, {"page_view_7d": 0.7}, -0.2),
        lambda: Scorer.restore({"means": {}, "variances": {}, "weights": {}, "intercept": 0.0}),
        lambda scorer: scorer_predictions({"open": scorer}),
    ),
    TrainingBatch: ValueCase(
        lambda: TrainingBatch(interaction_examples(), [5, 33], propensity_examples(), bandit_records()),
        TrainingBatch,
        lambda batch: batch,
    ),
}


def plain(state: Any) -> Any:
    """State as JSON would carry it; a value inside an export is carried as its own export."""
    while Value in type(state).__mro__:
        state = state.export()
    return orjson.loads(orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY))


def test_every_model_class_has_a_contract_case() -> None:
    speaking = set()
    for module_info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"models.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or getattr(cls, "_is_protocol", False):
                continue
            if any(name in ("learn_one", "export") or name.startswith("predict_") for name in dir(cls)):
                speaking.add(cls)
    assert speaking == set(LEARNERS) | set(VALUES)
    for cls in LEARNERS:
        assert {Learner, Exportable} <= set(cls.__mro__), f"{cls.__name__} must derive from Learner and Exportable"
    for cls in VALUES:
        assert Value in cls.__mro__, f"{cls.__name__} must derive from Value"


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda cls: cls.__name__)
def test_learn_one_does_not_mutate_its_input(cls: type[Any]) -> None:
    case = LEARNERS[cls]
    examples = case.examples()
    kept = copy.deepcopy(examples)
    model = case.make()
    for example in examples:
        model.learn_one(example)
    assert examples == kept


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda cls: cls.__name__)
def test_learn_many_is_learn_one_in_order(cls: type[Any]) -> None:
    case = LEARNERS[cls]
    one_by_one = case.make()
    for example in case.examples():
        one_by_one.learn_one(example)
    assert plain(trained(case).export()) == plain(one_by_one.export())


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda cls: cls.__name__)
def test_a_restored_learner_predicts_what_the_original_does(cls: type[Any]) -> None:
    case = LEARNERS[cls]
    model = trained(case)
    restored = case.make()
    restored.restore(model.export())
    assert case.predict(restored) == case.predict(model)


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda cls: cls.__name__)
def test_a_learner_restored_from_an_empty_export_still_learns(cls: type[Any]) -> None:
    case = LEARNERS[cls]
    model = case.make()
    model.restore(case.make().export())
    case.predict(model)
    model.learn_many(case.examples())
    assert case.predict(model) != case.predict(case.make()) or not case.examples()
    if case.empty_restore_is_fresh:
        assert case.predict(model) == case.predict(trained(case))


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda cls: cls.__name__)
def test_learners_survive_a_pickle_round_trip(cls: type[Any]) -> None:
    case = LEARNERS[cls]
    model = trained(case)
    clone = pickle.loads(pickle.dumps(model))
    assert plain(clone.export()) == plain(model.export())
    assert case.predict(clone) == case.predict(model)


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda cls: cls.__name__)
def test_learners_share_no_mutable_state(cls: type[Any]) -> None:
    case = LEARNERS[cls]
    first, second = case.make(), case.make()
    assert_no_shared_containers(first, second)
    first.learn_many(case.examples())
    assert plain(second.export()) == plain(case.make().export())


@pytest.mark.parametrize("cls", VALUES, ids=lambda cls: cls.__name__)
def test_export_is_plain_data_and_a_fixed_point_of_restore(cls: type[Any]) -> None:
    case = VALUES[cls]
    for value in (case.sample(), case.empty()):
        document = plain(value)
        again = cls.restore(document)
        assert plain(again) == document
        assert case.predict(cls.restore(plain(again))) == case.predict(again)


@pytest.mark.parametrize("cls", [cls for cls in VALUES if Record in cls.__mro__], ids=lambda cls: cls.__name__)
def test_records_round_trip_through_their_bytes(cls: type[Any]) -> None:
    case = VALUES[cls]
    for value in (case.sample(), case.empty()):
        decoded = cls.from_bytes(value.to_bytes())
        assert plain(decoded) == plain(value)
        assert case.predict(decoded) == case.predict(cls.restore(plain(value)))


@pytest.mark.parametrize("cls", VALUES, ids=lambda cls: cls.__name__)
def test_values_survive_a_pickle_round_trip(cls: type[Any]) -> None:
    case = VALUES[cls]
    value = case.sample()
    assert case.predict(pickle.loads(pickle.dumps(value))) == case.predict(value)


@pytest.mark.parametrize("cls", VALUES, ids=lambda cls: cls.__name__)
def test_values_share_no_mutable_state(cls: type[Any]) -> None:
    case = VALUES[cls]
    assert_no_shared_containers(case.empty(), case.empty())


def assert_no_shared_containers(first: Any, second: Any) -> None:
    names = [f.name for f in fields(first)] if is_dataclass(first) else list(vars(first))
    for name in names:
        mine, theirs = getattr(first, name), getattr(second, name)
        if isinstance(mine, list | dict | set | np.ndarray) or hasattr(mine, "__dict__"):
            assert mine is not theirs, f"{type(first).__name__}.{name} is shared between instances"


# The user's part of a model lives in their state: an update must build a new value.
PURE_UPDATES: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "interests.bump": (interests.bump, ({"outdoor": [1.0, BASE_TS]}, "books", 2.0, BASE_TS + 1, 7.0, 1)),
    "send_time.add_engagement": (send_time.add_engagement, ({"33": 40.0, "34": 30.0}, 33)),
    "reco.remember": (reco.remember, (["S1", 2.0] * 20, Interaction("u1", "S2", 4.0, BASE_TS))),
    "propensity.observe": (propensity.observe, (Probe(BASE_TS, [0.0], []), "email_open", BASE_TS + 1)),
}


@pytest.mark.parametrize("name", PURE_UPDATES)
def test_per_user_updates_build_new_values_and_leave_their_input(name: str) -> None:
    update, args = PURE_UPDATES[name]
    kept = copy.deepcopy(args)
    result = update(*args)
    assert args == kept
    assert all(result is not arg for arg in args)


@pytest.mark.parametrize("module", [info.name for info in pkgutil.iter_modules(models.__path__)])
def test_docstring_examples_run(module: str) -> None:
    failed, _ = doctest.testmod(importlib.import_module(f"models.{module}"))
    assert failed == 0


def test_item_snapshot_round_trips_and_restores_every_shared_part() -> None:
    trainer = trained(LEARNERS[ItemTrainer])
    trainer.learn_record(
        TrainingBatch(
            engagement_hours=[33],
            propensity_examples=[({"page_view_7d": 1.0}, ["open"])],
            bandit_records=[BanditRecord("sent", "e", "a", None, False)],
        ),
        0,
    )
    model = trainer.export()
    restored = new_item_trainer()
    restored.restore(ItemModel.from_bytes(model.to_bytes()))
    again = restored.export()
    # Everything but ROC AUC, which counts again from the next example after a restore.
    for quality in (again.propensity_quality, model.propensity_quality):
        for target in ("open", "click", "purchase"):
            quality[target].pop("auc")
    assert plain(again) == plain(model)
    assert again.send_hours[33] == 1.0 and again.bandits["e"]["a"]["sends"] == 1
    assert again.propensity_quality["examples"] == 1


def test_learning_a_training_record_does_not_mutate_it() -> None:
    batch = TrainingBatch(
        interactions=[(Interaction("u1", "S1", 1.0, BASE_TS), None)],
        propensity_examples=[({"page_view_7d": 1.0}, ["open"])],
        bandit_records=[BanditRecord("reward", "e", "a", "email_open", True)],
    )
    kept_batch = copy.deepcopy(batch)
    trained(LEARNERS[ItemTrainer]).learn_record(batch, 7)
    assert batch == kept_batch


def test_unknown_users_and_items_leave_no_trace() -> None:
    trainer = trained(LEARNERS[ItemTrainer])
    before = plain(trainer.export())
    model = trainer.export()
    picks = model.predict_top(["NEVER-SEEN", 1.0] * 5, 3)
    assert [p.reason for p in picks] == ["popular"] * 3
    assert plain(trainer.export()) == before


def test_missing_and_new_features_are_handled() -> None:
    scorer = trained(LEARNERS[PropensityTrainer]).export().scorers["open"]
    full = dict.fromkeys(FEATURES, 0.0)
    assert 0.0 < scorer.predict_proba_one({}) < 1.0  # every feature missing: the intercept alone
    assert scorer.predict_proba_one({**full, "a_feature_no_model_knows": 5.0}) == scorer.predict_proba_one(full)
    constant = Scorer({"f": 1.0}, {"f": 0.0}, {"f": 3.0}, 0.0)
    assert constant.predict_proba_one({"f": 9.0}) == 0.5  # no spread learned: the feature cannot count
