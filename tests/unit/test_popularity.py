from __future__ import annotations

from models.popularity import Popularity
from streams.events import Event
from streams.jobs import JobContext, email_context
from streams.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, item, make_event

DAY = 86_400_000
CONTEXT = JobContext("Shop", "https://shop", "1 Street", "https://shop/unsubscribe", b"secret", 14.0)


def observed(*events: Event) -> Popularity:
    popularity = Popularity(half_life_days=7)
    for event in events:
        popularity.observe(event)
    return popularity


def test_products_are_learned_from_items_and_ranked_by_weighted_activity() -> None:
    popularity = observed(
        make_event("cart_add", event_id="a", item=item(sku="TENT", price=99.0)),
        make_event("purchase", event_id="b", items=[item(sku="MUG", category="kitchen", price=8.0)], total=8.0),
        make_event("page_view", event_id="c", sku="TENT", category="outdoor"),
        make_event("page_view", event_id="d", sku="UNKNOWN", category="outdoor"),
    )
    # A purchase weighs 8, a cart add 4 plus a view 1; a product never seen in an item is not shown.
    assert [p.sku for p in popularity.top(5, BASE_TS)] == ["MUG", "TENT"]
    assert [p.sku for p in popularity.top(5, BASE_TS, category="outdoor")] == ["TENT"]
    assert [p.sku for p in popularity.top(5, BASE_TS, exclude=frozenset({"MUG"}))] == ["TENT"]


def test_scores_decay_so_recent_activity_wins() -> None:
    popularity = observed(
        make_event("purchase", event_id="old", ts=BASE_TS, items=[item(sku="OLD")], total=59.9),
        make_event("cart_add", event_id="new", ts=BASE_TS + 14 * DAY, item=item(sku="NEW")),
    )
    # Two half-lives later the purchase's 8 has decayed to 2, below the fresh cart add's 4.
    assert [p.sku for p in popularity.top(2, BASE_TS + 14 * DAY)] == ["NEW", "OLD"]


def test_capacity_keeps_the_strongest_products() -> None:
    popularity = Popularity(half_life_days=7, capacity=10)
    for n in range(30):
        for k in range(n % 3 + 1):
            popularity.observe(make_event("cart_add", event_id=f"e{n}-{k}", item=item(sku=f"S{n}")))
    assert len(popularity) <= 10
    assert all(p.sku in {f"S{n}" for n in range(30) if n % 3 == 2} for p in popularity.top(3, BASE_TS))


def test_template_context_recommends_popular_items_in_the_users_interests_not_yet_bought() -> None:
    popularity = observed(
        *(make_event("cart_add", event_id=f"o{n}", item=item(sku=f"OUT-{n}")) for n in range(4)),
        make_event("cart_add", event_id="k", item=item(sku="KIT-1", category="kitchen")),
    )
    state = UserState("u1")
    for event in (
        make_event("page_view", event_id="v", category="outdoor", sku="OUT-0"),
        make_event("purchase", event_id="p", items=[item(sku="OUT-0")], total=59.9),
        make_event("cart_add", event_id="c", cart_id="c9", item=item(sku="OUT-3")),
    ):
        state = apply(state, event, StatePolicy())
    context = email_context(state, CONTEXT, popularity, "https://u", BASE_TS)
    picks = context["recommendations"]
    assert {p["sku"] for p in picks} == {"OUT-1", "OUT-2"}
    assert picks[0]["reason"] == "popular in outdoor" and picks[0]["url"] == f"https://shop/p/{picks[0]['sku']}"
    assert "OUT-0" not in {p["sku"] for p in context["popular"]} and "KIT-1" in {p["sku"] for p in context["popular"]}
    assert context["engagement"] == "new" and context["top_interest"] == "outdoor"
