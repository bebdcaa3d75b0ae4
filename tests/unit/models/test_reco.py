from __future__ import annotations

import copy
import pickle

import numpy as np
import orjson
import pytest

from app.tools.model_quality import prequential_quality
from models.bandits import BanditRecord
from models.interactions import Interaction, Product
from models.item_trainer import ItemTrainer
from models.reco import DEFAULT_WEIGHTS, HISTORY_KEPT, ItemModel, pairs, remember, user_vector
from models.training import TrainingBatch
from streams.core.learning import interactions_of
from tests.factories import BASE_TS, item, make_event


def trained(n_users: int = 60, rounds: int = 30) -> ItemTrainer:
    """Two planted tastes: even users like A-items, odd users B-items; everyone also views
    GHOST, a product no cart or order ever described."""
    trainer = ItemTrainer(n_factors=8, half_life_days=7, capacity=100, seed=1)
    for r in range(rounds):
        batch = TrainingBatch()
        for u in range(n_users):
            side = "A" if u % 2 == 0 else "B"
            sku = f"{side}{(u + r) % 10}"
            batch.interactions.append(
                (Interaction(f"u{u}", sku, 2.0, BASE_TS + r), Product(sku, f"Item {sku}", side, 10.0))
            )
            batch.interactions.append((Interaction(f"u{u}", "GHOST", 1.0, BASE_TS + r), None))
        trainer.learn_record(TrainingBatch.from_bytes(batch.to_bytes()), offset=r)
    return trainer


@pytest.fixture(scope="module")
def snapshot() -> ItemModel:
    return trained().export()


def test_snapshot_round_trips_through_its_encoding(snapshot: ItemModel) -> None:
    decoded = ItemModel.from_bytes(snapshot.to_bytes())
    assert decoded.skus == snapshot.skus and decoded.offset == snapshot.offset == 30
    assert np.allclose(decoded.factors, snapshot.factors, atol=1e-6)
    assert decoded.products == snapshot.products and decoded.popular == snapshot.popular


def test_models_pickle_and_restore(snapshot: ItemModel) -> None:
    trainer = trained(rounds=2)
    clone = pickle.loads(pickle.dumps(trainer))
    assert clone.export().skus == trainer.export().skus
    restored = ItemTrainer(n_factors=8, half_life_days=7, capacity=100, seed=1)
    restored.restore(snapshot)
    again = restored.export()
    assert again.skus == snapshot.skus and again.offset == snapshot.offset
    assert np.allclose(again.factors, snapshot.factors) and again.popular == snapshot.popular


def test_planted_tastes_are_recommended(snapshot: ItemModel) -> None:
    history = [value for n in range(5) for value in (f"A{n}", 2.0)]
    picks = snapshot.predict_top(history, 5, exclude=frozenset(f"A{n}" for n in range(5)))
    assert [p.reason for p in picks] == ["model"] * 5
    assert all(p.sku.startswith("A") for p in picks)


def test_unknown_users_and_items_are_handled_without_side_effects(snapshot: ItemModel) -> None:
    before = copy.deepcopy(snapshot)
    assert user_vector(["NOPE", 8.0] * 5, snapshot) is None
    picks = snapshot.predict_top(["NOPE", 8.0], 3)
    assert [p.reason for p in picks] == ["popular"] * 3
    assert snapshot.skus == before.skus and np.array_equal(snapshot.factors, before.factors)
    assert ItemModel.empty(8).predict_top([], 3) == []


def test_learning_and_ranking_do_not_mutate_their_inputs(snapshot: ItemModel) -> None:
    history = ["A1", 2.0, "A2", 1.0]
    kept = copy.deepcopy(history)
    grown = remember(history, Interaction("u1", "A3", 4.0, BASE_TS))
    snapshot.predict_top(grown, 3, exclude=frozenset({"A1"}))
    assert history == kept and pairs(grown) == [("A1", 2.0), ("A2", 1.0), ("A3", 4.0)]
    full = [value for n in range(HISTORY_KEPT) for value in (f"A{n % 10}", float(n))]
    kept_pairs = pairs(remember(full, Interaction("u1", "B1", 1.0, BASE_TS)))
    assert len(kept_pairs) == HISTORY_KEPT and kept_pairs[0] == ("A1", 1.0) and kept_pairs[-1] == ("B1", 1.0)


def test_top_n_excludes_what_the_user_owns_and_products_never_seen_in_an_item(snapshot: ItemModel) -> None:
    history = [value for n in range(9) for value in (f"A{n}", 2.0)]
    owned = frozenset(f"A{n}" for n in range(9))
    picks = snapshot.predict_top(history, 20, exclude=owned)
    assert not owned & {p.sku for p in picks} and len({p.sku for p in picks}) == len(picks)
    assert {p.sku for p in picks} <= set(snapshot.products) and "GHOST" in snapshot.skus
    assert "GHOST" not in {p.sku for p in picks}


def test_bought_together_rules_follow_purchases() -> None:
    trainer = ItemTrainer(n_factors=4, half_life_days=7, capacity=100, seed=1)
    for n in range(5):
        for sku in ("TENT", "PEGS"):
            product = Product(sku, sku.title(), "outdoor", 10.0)
            trainer.learn_one((Interaction(f"u{n}", sku, 8.0, BASE_TS, order_id=f"o{n}"), product))
    model = trainer.export()
    assert model.together["TENT"] == ["PEGS"]
    picks = model.predict_top([], 1, exclude=frozenset({"TENT"}), bought=["TENT"])
    assert [(p.sku, p.reason) for p in picks] == [("PEGS", "rule")]


def test_interactions_carry_weights_products_and_orders() -> None:
    purchase = make_event("purchase", order_id="o7", items=[item(sku="S1"), item(sku="S2")], total=9.0)
    found = interactions_of(purchase, DEFAULT_WEIGHTS)
    assert [(i.sku, i.weight, i.order_id, p.name if p else None) for i, p in found] == [
        ("S1", 8.0, "o7", "Item S1"),
        ("S2", 8.0, "o7", "Item S2"),
    ]
    view = interactions_of(make_event("page_view", sku="S3"), DEFAULT_WEIGHTS)
    assert [(i.sku, i.weight, p) for i, p in view] == [("S3", 1.0, None)]
    assert interactions_of(make_event("email_open"), DEFAULT_WEIGHTS) == []
    batch = TrainingBatch(
        interactions=[*found, *view], engagement_hours=[5], bandit_records=[BanditRecord("sent", "e", "a", None, False)]
    )
    assert TrainingBatch.from_bytes(batch.to_bytes()) == batch
    # Experiment records travel as arrays, as trainers of earlier releases read them.
    assert orjson.loads(batch.to_bytes())[3] == [["sent", "e", "a", None, False]]
    pieces = TrainingBatch(interactions=found * 5, engagement_hours=[1, 2, 3]).split(max_items=4)
    assert [(len(p.interactions), len(p.engagement_hours)) for p in pieces] == [(4, 3), (4, 0), (2, 0)]


def test_fleet_design_matches_one_model_and_beats_popularity_on_planted_data() -> None:
    quality = prequential_quality(users=1_000, events=40_000, seed=5)
    fleet, single, popular = (quality.rate(h) for h in (quality.fleet_hits, quality.single_hits, quality.popular_hits))
    assert quality.predictions > 10_000
    assert fleet >= 0.95 * single
    assert fleet >= 2 * popular


def test_products_the_catalogue_withdraws_are_never_offered() -> None:
    trainer = trained()
    trainer.update_catalog("A5", {"name": "Item A5", "category": "A", "price": 10.0, "available": False})
    trainer.update_catalog("A6", None)
    trainer.update_catalog("NEW", {"name": "New thing", "category": "A", "price": 5.0, "available": True})
    model = ItemModel.from_bytes(trainer.export().to_bytes())
    assert model.unavailable == {"A5", "A6"} and model.products["NEW"].name == "New thing"
    history = [value for n in range(5) for value in (f"A{n}", 2.0)]
    picks = {p.sku for p in model.predict_top(history, 20)}
    assert not picks & {"A5", "A6"} and "A5" not in model.popular
    trainer.update_catalog("A5", {"name": "Item A5", "category": "A", "price": 10.0, "available": True})
    assert "A5" not in trainer.export().unavailable


def test_the_worker_predicts_a_fixed_sample_of_clicks_before_learning_them(snapshot: ItemModel) -> None:
    import zlib

    from tests.factories import event_doc
    from tests.unit.core.support import Store, processor, record

    worker = processor()
    worker.item_model = snapshot
    clicks = [event_doc("click", "u0", event_id=f"c{n}", ts=BASE_TS + n, sku=f"A{n % 10}") for n in range(40)]
    result = worker.process({0: [record(n, doc) for n, doc in enumerate(clicks)]}, Store().load)
    sampled = [doc for doc in clicks if zlib.crc32(doc["event_id"].encode()) % 16 == 0]
    assert 0 < result.counts.reco_quality["predictions"] == len(sampled) < len(clicks)
    # u0 clicks its own side's items, which the model ranks high once it knows three of them.
    assert result.counts.reco_quality["model"] > result.counts.reco_quality["popular"]
    assert len(result.training.interactions) == len(clicks)
