"""The contract every model here keeps: learning does not mutate its input, unknown users
and items have no side effects, state survives a pickle round trip and the snapshot
encoding, and missing or new features are handled."""

from __future__ import annotations

import copy
import pickle
import zlib
from typing import Any

import orjson
import pytest

from models.bandits import BanditRecord, BanditTrainer
from models.popularity import Product
from models.propensity import FEATURES, PropensityTrainer, Scorer
from models.reco import Interaction, ItemModel, ItemTrainer, TrainingBatch
from tests.factories import BASE_TS


def item_trainer() -> ItemTrainer:
    trainer = ItemTrainer(n_factors=4, half_life_days=7, capacity=50)
    batch = TrainingBatch(
        interactions=[
            (Interaction(f"u{n % 5}", f"S{n % 6}", 2.0, BASE_TS + n), Product(f"S{n % 6}", "s", "c", 1.0))
            for n in range(40)
        ],
        engagement_hours=[33],
        propensity_examples=[({"page_view_7d": 1.0}, ["open"])],
        bandit_records=[BanditRecord("sent", "e", "a", None, False)],
    )
    trainer.learn_batch(batch, 0)
    return trainer


def propensity_trainer() -> PropensityTrainer:
    trainer = PropensityTrainer()
    for n in range(50):
        trainer.learn({"page_view_7d": float(n % 4), "mobile": float(n % 2)}, ["open"] if n % 4 else [])
    return trainer


def bandit_trainer() -> BanditTrainer:
    trainer = BanditTrainer()
    trainer.sent("e", "a")
    trainer.rewarded("e", "a", "email_open", first=True)
    return trainer


def as_document(model: ItemModel) -> Any:
    return orjson.loads(zlib.decompress(model.encode()))


def snapshot_state(model: Any) -> Any:
    if isinstance(model, ItemTrainer):
        return as_document(model.snapshot())
    if isinstance(model, PropensityTrainer):
        return {target: scorer.to_doc() for target, scorer in model.scorers().items()}
    return model.export()


MODELS = {"items": item_trainer, "propensity": propensity_trainer, "bandits": bandit_trainer}


@pytest.mark.parametrize("name", MODELS)
def test_state_survives_a_pickle_round_trip(name: str) -> None:
    model = MODELS[name]()
    assert snapshot_state(pickle.loads(pickle.dumps(model))) == snapshot_state(model)


def test_item_snapshot_round_trips_and_restores_every_shared_part() -> None:
    model = item_trainer().snapshot()
    decoded = ItemModel.decode(model.encode())
    restored = ItemTrainer(n_factors=4, half_life_days=7, capacity=50)
    restored.restore(decoded)
    again = restored.snapshot()
    # Everything but ROC AUC, which counts again from the next example after a restore.
    for quality in (again.propensity_quality, model.propensity_quality):
        for target in ("open", "click", "purchase"):
            quality[target].pop("auc")
    assert as_document(again) == as_document(model)
    assert again.send_hours[33] == 1.0 and again.bandits["e"]["a"]["sends"] == 1
    assert again.propensity_quality["examples"] == 1


def test_learning_does_not_mutate_its_input() -> None:
    x = {"page_view_7d": 1.0}
    outcomes = ["open"]
    kept = (copy.deepcopy(x), list(outcomes))
    propensity_trainer().learn(x, outcomes)
    assert (x, outcomes) == kept
    batch = TrainingBatch(
        interactions=[(Interaction("u1", "S1", 1.0, BASE_TS), None)],
        propensity_examples=[({"page_view_7d": 1.0}, ["open"])],
        bandit_records=[BanditRecord("reward", "e", "a", "email_open", True)],
    )
    kept_batch = copy.deepcopy(batch)
    item_trainer().learn_batch(batch, 7)
    assert batch == kept_batch


def test_unknown_users_and_items_leave_no_trace() -> None:
    trainer = item_trainer()
    before = as_document(trainer.snapshot())
    model = trainer.snapshot()
    from models.reco import recommend, user_vector

    assert user_vector(["NEVER-SEEN", 1.0] * 5, model) is None
    recommend(["NEVER-SEEN", 1.0], model, 3)
    assert as_document(trainer.snapshot()) == before


def test_missing_and_new_features_are_handled() -> None:
    scorer = propensity_trainer().scorers()["open"]
    full = dict.fromkeys(FEATURES, 0.0)
    assert 0.0 < scorer.probability({}) < 1.0  # every feature missing: the intercept alone
    assert scorer.probability({**full, "a_feature_no_model_knows": 5.0}) == scorer.probability(full)
    constant = Scorer({"f": 1.0}, {"f": 0.0}, {"f": 3.0}, 0.0)
    assert constant.probability({"f": 9.0}) == 0.5  # no spread learned: the feature cannot count


def test_an_unreadable_snapshot_is_skipped_not_fatal() -> None:
    from types import SimpleNamespace

    from streams.kafka.model_feed import _decoded

    good = SimpleNamespace(value=item_trainer().snapshot().encode(), offset=7)
    assert _decoded(good).version == 7  # type: ignore[arg-type, union-attr]
    for value in (b"not zlib", zlib.compress(b"[1, 2]"), zlib.compress(b'{"skus": []}')):
        assert _decoded(SimpleNamespace(value=value, offset=8)) is None  # type: ignore[arg-type]
