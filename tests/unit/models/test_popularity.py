from __future__ import annotations

from models.popularity import Popularity, Product
from models.reco import DEFAULT_WEIGHTS, ItemTrainer, remember
from streams.core.jobs import JobContext, email_context
from streams.core.learning import interactions_of
from streams.core.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, item, make_event

DAY = 86_400_000
CONTEXT = JobContext("Shop", "https://shop", "1 Street", "https://shop/unsubscribe", b"secret", 14.0)


def product(sku: str, category: str = "outdoor") -> Product:
    return Product(sku, f"Item {sku}", category, 10.0)


def test_products_are_ranked_by_weighted_activity_and_unknown_skus_ignored() -> None:
    popularity = Popularity(half_life_days=7)
    popularity.observe_product(product("TENT"), 4.0, BASE_TS)
    popularity.observe_product(product("MUG", "kitchen"), 8.0, BASE_TS)
    popularity.bump("TENT", 1.0, BASE_TS)
    popularity.bump("UNKNOWN", 50.0, BASE_TS)
    assert [p.sku for p in popularity.top(5, BASE_TS)] == ["MUG", "TENT"]
    assert [p.sku for p in popularity.top(5, BASE_TS, category="outdoor")] == ["TENT"]
    assert [p.sku for p in popularity.top(5, BASE_TS, exclude=frozenset({"MUG"}))] == ["TENT"]


def test_scores_decay_so_recent_activity_wins() -> None:
    popularity = Popularity(half_life_days=7)
    popularity.observe_product(product("OLD"), 8.0, BASE_TS)
    popularity.observe_product(product("NEW"), 4.0, BASE_TS + 14 * DAY)
    # Two half-lives later the purchase's 8 has decayed to 2, below the fresh cart add's 4.
    assert [p.sku for p in popularity.top(2, BASE_TS + 14 * DAY)] == ["NEW", "OLD"]


def test_capacity_keeps_the_strongest_products_and_export_round_trips() -> None:
    popularity = Popularity(half_life_days=7, capacity=10)
    for n in range(30):
        popularity.observe_product(product(f"S{n}"), float(n % 3 + 1), BASE_TS)
    assert len(popularity) <= 10
    assert all(p.sku in {f"S{n}" for n in range(30) if n % 3 == 2} for p in popularity.top(3, BASE_TS))
    copy = Popularity(half_life_days=7, capacity=10)
    copy.load(popularity.export(BASE_TS))
    assert copy.top(10, BASE_TS) == popularity.top(10, BASE_TS)


def test_template_context_takes_products_from_the_item_model_without_owned_ones() -> None:
    trainer = ItemTrainer(n_factors=4, half_life_days=14, capacity=100)
    state = UserState("u1")
    events = [
        *(make_event("cart_add", user_id=f"x{n}", event_id=f"o{n}", item=item(sku=f"OUT-{n}")) for n in range(4)),
        make_event("cart_add", user_id="x9", event_id="k", item=item(sku="KIT-1", category="kitchen")),
        make_event("purchase", event_id="p", items=[item(sku="OUT-0")], total=59.9),
        make_event("cart_add", event_id="c", cart_id="c9", item=item(sku="OUT-3")),
    ]
    for event in events:
        for interaction, details in interactions_of(event, DEFAULT_WEIGHTS):
            trainer.learn(interaction, details)
            if event.user_id == "u1":
                state.recent_interactions = remember(state.recent_interactions, interaction)
        if event.user_id == "u1":
            state = apply(state, event, StatePolicy())
    context = email_context(state, CONTEXT, trainer.snapshot(), "https://u", BASE_TS)
    offered = {p["sku"] for p in context["recommendations"]} | {p["sku"] for p in context["popular"]}
    assert offered == {"OUT-1", "OUT-2", "KIT-1"}
    first = context["popular"][0]
    assert first["reason"] == "popular" and first["url"] == f"https://shop/p/{first['sku']}"
    assert first["image_url"] == f"https://shop/images/{first['sku']}.jpg" and first["name"].startswith("Item ")
    assert context["engagement"] == "new"
