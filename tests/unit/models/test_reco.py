from __future__ import annotations

import copy
import pickle
import zlib
from collections.abc import Callable

import orjson
import pytest

from models.bandits import BanditRecord
from models.interactions import Interaction, Product
from models.item_trainer import ItemTrainer
from models.ranking import Blend, item_to_item_top, popular_top
from models.reco import DEFAULT_WEIGHTS, HISTORY_KEPT, ItemModel, pairs, remember
from models.training import TrainingBatch
from streams.core.learning import interactions_of
from tests.factories import BASE_TS, item, make_event


def trained(n_users: int = 60, rounds: int = 30) -> ItemTrainer:
    """Two planted tastes: even users like A-items, odd users B-items, each walking through
    their side's ten in order; everyone also views GHOST, a product no cart or order ever
    described."""
    trainer = ItemTrainer(half_life_days=7, capacity=100)
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
    assert decoded.offset == snapshot.offset == 30 and decoded.transitions == snapshot.transitions
    assert decoded.products == snapshot.products and decoded.popular == snapshot.popular
    assert decoded.index.skus == snapshot.index.skus and decoded.next_after == snapshot.next_after
    history = ["A1", 2.0, "B1", 1.0]
    assert decoded.predict_top(history, 5) == snapshot.predict_top(history, 5)


def test_models_pickle_and_restore(snapshot: ItemModel) -> None:
    trainer = trained(rounds=2)
    clone = pickle.loads(pickle.dumps(trainer))
    assert clone.export().transitions == trainer.export().transitions
    restored = ItemTrainer(half_life_days=7, capacity=100)
    restored.restore(snapshot)
    again = restored.export()
    assert again.transitions == snapshot.transitions and again.offset == snapshot.offset
    assert again.popular == snapshot.popular


def test_planted_tastes_are_recommended(snapshot: ItemModel) -> None:
    history = [value for n in range(5) for value in (f"A{n}", 2.0)]
    picks = snapshot.predict_top(history, 5)
    assert {p.sku for p in picks} == {f"A{n}" for n in range(5, 10)}
    assert {p.reason for p in picks} <= {"sequence", "category"}
    # What users touched after A4 is A5: it leads.
    assert picks[0].sku == "A5"


def test_a_user_with_no_evidence_gets_the_prior_and_each_component_ranks_alone(snapshot: ItemModel) -> None:
    assert [p.reason for p in snapshot.predict_top([], 3)] == ["popular"] * 3
    history = ["B3", 2.0]
    sequence = snapshot.predict_top(history, 3, blend=Blend(categories=0, rules=0, popularity=0))
    assert sequence[0].sku == "B4" and sequence[0].reason == "sequence"
    categories = snapshot.predict_top(history, 3, blend=Blend(sequence=0, rules=0, popularity=0))
    assert {p.reason for p in categories} == {"category"} and all(p.sku.startswith("B") for p in categories)


def test_unknown_users_and_items_are_handled_without_side_effects(snapshot: ItemModel) -> None:
    before = copy.deepcopy(snapshot)
    picks = snapshot.predict_top(["NOPE", 8.0], 3)
    assert [p.reason for p in picks] == ["popular"] * 3
    assert snapshot.transitions == before.transitions and snapshot.index.skus == before.index.skus
    assert (snapshot.index.popularity == before.index.popularity).all()
    assert ItemModel.empty().predict_top([], 3) == []


def test_learning_and_ranking_do_not_mutate_their_inputs(snapshot: ItemModel) -> None:
    history = ["A1", 2.0, "A2", 1.0]
    kept = copy.deepcopy(history)
    grown = remember(history, Interaction("u1", "A3", 4.0, BASE_TS))
    snapshot.predict_top(grown, 3, exclude=frozenset({"A1"}))
    assert history == kept and pairs(grown) == [("A1", 2.0), ("A2", 1.0), ("A3", 4.0)]
    full = [value for n in range(HISTORY_KEPT) for value in (f"A{n % 10}", float(n))]
    kept_pairs = pairs(remember(full, Interaction("u1", "B1", 1.0, BASE_TS)))
    assert len(kept_pairs) == HISTORY_KEPT and kept_pairs[0] == ("A1", 1.0) and kept_pairs[-1] == ("B1", 1.0)


def test_top_n_leaves_out_what_the_user_touched_owns_and_what_no_event_described(snapshot: ItemModel) -> None:
    history = [value for n in range(6) for value in (f"A{n}", 2.0)]
    owned = frozenset({"A6", "A7"})
    picks = snapshot.predict_top(history, 20, exclude=owned)
    assert not (owned | set(history[::2])) & {p.sku for p in picks} and len({p.sku for p in picks}) == len(picks)
    assert {p.sku for p in picks} <= set(snapshot.products) and "GHOST" in snapshot.transitions.counts
    assert "GHOST" not in {p.sku for p in picks}


def test_bought_then_later_bought_becomes_a_rule() -> None:
    trainer = ItemTrainer(half_life_days=7, capacity=100)
    for n in range(5):
        for day, sku in enumerate(("TENT", "PEGS")):  # the pegs in an order of their own, a day later
            product = Product(sku, sku.title(), "outdoor", 10.0)
            at = BASE_TS + day * 86_400_000
            trainer.learn_one((Interaction(f"u{n}", sku, 8.0, at, order_id=f"o{n}-{sku}"), product))
    model = trainer.export()
    assert model.together == {"TENT": ["PEGS"]}
    picks = model.predict_top([], 1, exclude=frozenset({"TENT"}), bought=["TENT"])
    assert [(p.sku, p.reason) for p in picks] == [("PEGS", "rule")]


def test_the_baselines_rank_from_the_same_snapshot(snapshot: ItemModel) -> None:
    assert popular_top(snapshot, 3, frozenset()) == snapshot.popular[:3]
    assert popular_top(snapshot, 3, frozenset(snapshot.popular[:1])) == snapshot.popular[1:4]
    # Everyone viewed GHOST after A3, but no event described it: popular products instead.
    assert snapshot.next_after["A3"] == ["GHOST"]
    assert item_to_item_top(["A3", 2.0], snapshot, 2, frozenset()) == snapshot.popular[:2]
    assert item_to_item_top([], snapshot, 2, frozenset()) == snapshot.popular[:2]
    trainer = ItemTrainer(half_life_days=7, capacity=100)
    for n, sku in enumerate(["TENT", "PEGS", "MUG"]):
        trainer.learn_one((Interaction("u1", sku, 4.0, BASE_TS + n), Product(sku, sku, "outdoor", 1.0)))
    # PEGS followed TENT; then the most popular, MUG (the latest, so the least decayed).
    assert item_to_item_top(["TENT", 4.0], trainer.export(), 2, frozenset()) == ["PEGS", "MUG"]


def test_a_snapshot_of_the_release_with_item_factors_still_ranks() -> None:
    old = {
        "skus": ["TENT", "PEGS"],
        "factors": [[0.1, 0.2], [0.3, 0.4]],
        "biases": [0.1, 0.2],
        "global_mean": 1.0,
        "popularity": [["TENT", 8.0, BASE_TS], ["PEGS", 4.0, BASE_TS]],
        "together": {"TENT": ["PEGS"]},
        "products": {"TENT": ["Tent", "outdoor", 99.0], "PEGS": ["Pegs", "outdoor", 5.0]},
        "offset": 12,
        "send_hours": [0.0] * 168,
        "propensity": {},
        "propensity_quality": {},
        "bandits": {},
        "unavailable": [],
    }
    model = ItemModel.from_bytes(zlib.compress(orjson.dumps(old)))
    assert model.offset == 12 and model.items == 0
    assert [(p.sku, p.reason) for p in model.predict_top([], 2, bought=["TENT"], exclude=frozenset({"TENT"}))] == [
        ("PEGS", "rule")
    ]
    restored = ItemTrainer(half_life_days=7, capacity=100)
    restored.restore(model)
    assert restored.export().popular == ["TENT", "PEGS"]


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


def sampled_ids(prefix: str, count: int, keep: Callable[[int], bool]) -> list[str]:
    return [f"{prefix}{n}" for n in range(100_000) if keep(zlib.crc32(f"{prefix}{n}".encode()))][:count]


def test_the_worker_predicts_a_fixed_sample_of_events_before_learning_them(snapshot: ItemModel) -> None:
    from tests.factories import event_doc
    from tests.unit.core.support import Store, processor, record

    worker = processor()
    worker.item_model = snapshot
    # u0 walks through its side's items: a view of each (a first touch, in the sample of
    # one in 64 events), then a click on it (in the sample of one in 16 clicks only), and
    # a view outside both samples.
    views = sampled_ids("v", 10, lambda crc: crc % 64 == 0)
    clicks = sampled_ids("c", 10, lambda crc: crc % 16 == 0 and crc % 64 != 0)
    others = sampled_ids("o", 10, lambda crc: crc % 16 != 0)
    docs = [
        event_doc(kind, "u0", event_id=ids[n], ts=BASE_TS + n, sku=f"A{n}")
        for n in range(10)
        for kind, ids in (("page_view", views), ("click", clicks), ("page_view", others))
    ]
    result = worker.process({0: [record(n, doc) for n, doc in enumerate(docs)]}, Store().load)
    quality = result.counts.reco_quality
    assert quality["predictions"] == quality["new_predictions"] == 10
    # Every click is of a product just viewed: none is new, so no recommender offers it.
    assert quality["model"] == quality["popular"] == 0
    # What follows A(n) is A(n + 1): the model knows, popularity does not.
    assert quality["new_model"] > quality["new_item_to_item"] >= quality["new_popular"]
    assert len(result.training.interactions) == len(docs)
