from __future__ import annotations

from models.interactions import Interaction, Product
from models.item_trainer import ItemTrainer
from models.popularity import Popularity
from models.reco import DEFAULT_WEIGHTS, remember
from streams.core.jobs import JobContext, email_context
from streams.core.learning import interactions_of
from streams.core.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, item, make_event

DAY = 86_400_000
CONTEXT = JobContext("Shop", "https://shop", "1 Street", "https://shop/unsubscribe", b"secret", 14.0)


def product(sku: str, category: str = "outdoor") -> Product:
    return Product(sku, f"Item {sku}", category, 10.0)


def described(product: Product, weight: float, ts: int) -> tuple[Interaction, Product]:
    """Activity on a product whose event gave its details (a cart add or an order)."""
    return Interaction("u1", product.sku, weight, ts), product


def by_sku(sku: str, weight: float, ts: int) -> tuple[Interaction, None]:
    """Activity naming a sku alone (a view or a click)."""
    return Interaction("u1", sku, weight, ts), None


def test_products_are_ranked_by_weighted_activity_and_unknown_skus_ignored() -> None:
    popularity = Popularity(half_life_days=7)
    popularity.learn_one(described(product("TENT"), 4.0, BASE_TS))
    popularity.learn_one(described(product("MUG", "kitchen"), 8.0, BASE_TS))
    popularity.learn_one(by_sku("TENT", 1.0, BASE_TS))
    popularity.learn_one(by_sku("UNKNOWN", 50.0, BASE_TS))
    assert [p.sku for p in popularity.predict_top(BASE_TS, 5)] == ["MUG", "TENT"]
    assert [p.sku for p in popularity.predict_top(BASE_TS, 5, category="outdoor")] == ["TENT"]
    assert [p.sku for p in popularity.predict_top(BASE_TS, 5, exclude=frozenset({"MUG"}))] == ["TENT"]


def test_scores_decay_so_recent_activity_wins() -> None:
    popularity = Popularity(half_life_days=7)
    popularity.learn_one(described(product("OLD"), 8.0, BASE_TS))
    popularity.learn_one(described(product("NEW"), 4.0, BASE_TS + 14 * DAY))
    # Two half-lives later the purchase's 8 has decayed to 2, below the fresh cart add's 4.
    assert [p.sku for p in popularity.predict_top(BASE_TS + 14 * DAY, 2)] == ["NEW", "OLD"]


def test_capacity_keeps_the_strongest_products_and_export_round_trips() -> None:
    popularity = Popularity(half_life_days=7, capacity=10)
    for n in range(30):
        popularity.learn_one(described(product(f"S{n}"), float(n % 3 + 1), BASE_TS))
    assert len(popularity) <= 10
    assert all(p.sku in {f"S{n}" for n in range(30) if n % 3 == 2} for p in popularity.predict_top(BASE_TS, 3))
    copy = Popularity(half_life_days=7, capacity=10)
    copy.restore(popularity.export(BASE_TS))
    assert copy.predict_top(BASE_TS, 10) == popularity.predict_top(BASE_TS, 10)


def test_template_context_takes_products_from_the_item_model_without_owned_ones() -> None:
    trainer = ItemTrainer(half_life_days=14, capacity=100)
    state = UserState("u1")
    events = [
        *(make_event("cart_add", user_id=f"x{n}", event_id=f"o{n}", item=item(sku=f"OUT-{n}")) for n in range(4)),
        make_event("cart_add", user_id="x9", event_id="k", item=item(sku="KIT-1", category="kitchen")),
        make_event("purchase", event_id="p", items=[item(sku="OUT-0")], total=59.9),
        make_event("cart_add", event_id="c", cart_id="c9", item=item(sku="OUT-3")),
    ]
    for event in events:
        for interaction, details in interactions_of(event, DEFAULT_WEIGHTS):
            trainer.learn_one((interaction, details))
            if event.user_id == "u1":
                state.recent_interactions = remember(state.recent_interactions, interaction)
        if event.user_id == "u1":
            state = apply(state, event, StatePolicy())
    context = email_context(state, CONTEXT, trainer.export(), "https://u", BASE_TS)
    offered = {p["sku"] for p in context["recommendations"]} | {p["sku"] for p in context["popular"]}
    assert offered == {"OUT-1", "OUT-2", "KIT-1"}
    first = context["popular"][0]
    assert first["reason"] == "popular" and first["url"] == f"https://shop/p/{first['sku']}"
    assert first["image_url"] == f"https://shop/images/{first['sku']}.jpg" and first["name"].startswith("Item ")
    assert context["engagement"] == "new"
