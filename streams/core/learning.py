"""What the models learn from and are asked about, read off events and user state.

`models/` knows nothing of events or user state; these functions turn them into the
plain inputs the models take (interactions, feature vectors, sets of skus).
"""

from __future__ import annotations

import math

from models.interactions import Interaction, Product
from models.propensity import ACTIVITY, FEATURES, RECENCY_CAP_DAYS, Probe
from models.reco import ItemModel
from streams.core.events import Event
from streams.core.state import MILLIS_PER_DAY, UserState


def interactions_of(event: Event, weights: dict[str, float]) -> list[tuple[Interaction, Product | None]]:
    """The implicit feedback in one event, with the product's details where it carries them."""
    weight = weights.get(event.type)
    if weight is None:
        return []
    props = event.properties
    if event.type == "cart_add":
        items = [props["item"]]
    elif event.type == "purchase":
        items = props["items"]
    else:
        sku = props.get("sku")
        return [(Interaction(event.user_id, sku, weight, event.timestamp_ms), None)] if isinstance(sku, str) else []
    order_id = props.get("order_id") if event.type == "purchase" else None
    return [
        (
            Interaction(event.user_id, item["sku"], weight, event.timestamp_ms, order_id),
            Product(item["sku"], item["name"], item["category"], float(item["price"])),
        )
        for item in items
    ]


def bought_skus(state: UserState) -> list[str]:
    """What the user bought recently, oldest first (bought-together rules start from these)."""
    return [sku for purchase in state.recent_purchases for sku in purchase["skus"]]


def owned_skus(state: UserState) -> frozenset[str]:
    """What a user should not be offered: recent purchases and what is in their cart."""
    in_cart = state.cart["items"] if state.cart else ()
    return frozenset(bought_skus(state)) | frozenset(in_cart)


def features(state: UserState, now_ms: int) -> dict[str, float]:
    """What the models see of a user: activity over the last 7 and 30 days, recency, habits."""
    today = now_ms // MILLIS_PER_DAY
    week: dict[str, int] = {}
    month: dict[str, int] = {}
    active_days = [0, 0]
    for day, counts in state.daily_counts.items():
        age = today - int(day)
        if 0 <= age < 30:
            active_days[1] += 1
            for event_type, n in counts.items():
                month[event_type] = month.get(event_type, 0) + n
                if age < 7:
                    week[event_type] = week.get(event_type, 0) + n
            if age < 7:
                active_days[0] += 1
    x = {
        f"{event_type}_{span}": math.log1p(counts.get(event_type, 0))
        for span, counts in (("7d", week), ("30d", month))
        for event_type in ACTIVITY
    }
    for name, last in (
        ("days_since_open", state.last_email_open_ms),
        ("days_since_click", state.last_email_click_ms),
        ("days_since_purchase", state.last_seen_by_type.get("purchase")),
        ("days_since_seen", state.last_seen_ms or None),
    ):
        days = (now_ms - last) / MILLIS_PER_DAY if last else RECENCY_CAP_DAYS
        x[name] = min(max(days, 0.0), RECENCY_CAP_DAYS)
    x["cart_items"] = float(len(state.cart["items"])) if state.cart else 0.0
    x["mobile"] = 1.0 if state.traits.get("device") == "mobile" else 0.0
    x["active_days_7d"], x["active_days_30d"] = float(active_days[0]), float(active_days[1])
    x.update(_money_and_rates(state, now_ms, today))
    return x


def _money_and_rates(state: UserState, now_ms: int, today: int) -> dict[str, float]:
    """Spend in the last 30 days and per order (all currencies as one number: a ranking
    signal, not an amount), and purchases and opens per week since the user was first seen."""
    month_revenue = sum(
        sum(amounts.values()) for day, amounts in state.daily_revenue.items() if 0 <= today - int(day) < 30
    )
    purchases = state.counts.get("purchase", 0)
    weeks = max((now_ms - state.first_seen_ms) / (7 * MILLIS_PER_DAY), 1.0) if state.first_seen_ms else 1.0
    return {
        "revenue_30d": math.log1p(month_revenue),
        "average_order": math.log1p(sum(state.revenue.values()) / purchases) if purchases else 0.0,
        "purchases_per_week": purchases / weeks,
        "opens_per_week": state.counts.get("email_open", 0) / weeks,
    }


def open_probe(state: UserState, now_ms: int) -> Probe:
    """A new propensity probe: the user's features now, no outcomes yet."""
    x = features(state, now_ms)
    return Probe(now_ms, [round(x[name], 3) for name in FEATURES], [])


def propensity_scores(item_model: ItemModel, state: UserState, at_ms: int) -> dict[str, float]:
    """The user's chance to open, click and buy within 7 days, by score name (`open_7d`, ...)."""
    x = features(state, at_ms)
    return {f"{target}_7d": scorer.predict_proba_one(x) for target, scorer in item_model.propensity.items()}
