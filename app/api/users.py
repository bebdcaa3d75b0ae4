"""A user's stored profile, and the recommendations and predictions made for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import orjson
from aiohttp import web

from app.api.params import checked_user_id, whole_number
from app.api.services import ApiServices, json_response, services
from models import interests
from models.send_time import DAYS, best_send_time, next_occurrence
from streams.core.jobs import format_time
from streams.core.learning import bought_skus, owned_skus
from streams.core.learning import features as propensity_features
from streams.core.state import UserState
from streams.kafka.lookup import NotOwned

MAX_RECOMMENDATIONS = 100


def stored_user(app: ApiServices, user_id: str) -> UserState | web.Response:
    """The user's state from this worker's tables, or the error response to give instead."""
    state = app.users.get(user_id)
    if isinstance(state, NotOwned):
        error = f"user {user_id!r} lives in partition {state.partition}, not owned by this worker"
        return json_response({"error": error}, 421)
    if state is None:
        return json_response({"error": f"no user {user_id!r}"}, 404)
    return state


async def user_profile(request: web.Request) -> web.Response:
    app = services(request)
    state = stored_user(app, checked_user_id(request.match_info["user_id"]))
    if isinstance(state, web.Response):
        return state
    partition = app.users.partition_of(state.user_id)
    now_ms = max(state.last_seen_ms, 0)
    summary = {
        "user_id": state.user_id,
        "traits": state.traits,
        "first_seen_ms": state.first_seen_ms,
        "last_seen_ms": state.last_seen_ms,
        "signed_up_ms": state.signed_up_ms,
        "counts": state.counts,
        "revenue": state.revenue,
        "interests": dict(interests.top(state.interests, now_ms, app.settings.interest_half_life_days, n=10)),
        "cart": state.cart,
        "recent_purchases": state.recent_purchases,
        "last_email_open_ms": state.last_email_open_ms,
        "last_email_click_ms": state.last_email_click_ms,
        "unsubscribed_lists": state.unsubscribed_lists,
        "subscriptions": state.subscriptions,
        "flows_entered": state.flows_entered,
        "segments": state.segments,
        "next_check_ms": state.next_check_ms,
        "partition": partition,
        "applied_offset": state.applied_offset,
    }
    return json_response(summary)


async def user_recommendations(request: web.Request) -> web.Response:
    """Top-k products for a user, each with its score and why (sequence, category, rule or popular);
    cached in Redis until the user's next event. A user never seen gets popular products."""
    app = services(request)
    user_id = checked_user_id(request.match_info["user_id"])
    k = whole_number(request, "k", 10, 1, MAX_RECOMMENDATIONS)
    model = app.processor.item_model

    def answer(state: UserState) -> bytes:
        bought = bought_skus(state)
        picks = model.predict_top(state.recent_interactions, k, owned_skus(state), bought)
        items = [{**asdict(model.products[p.sku]), "score": p.score, "reason": p.reason} for p in picks]
        return orjson.dumps({"user_id": user_id, "items": items, "model_offset": model.offset})

    return await _cached(app, user_id, f"recommendations:{k}:{model.version}", answer)


async def user_predictions(request: web.Request) -> web.Response:
    """The chance this user opens, clicks and buys in the next 7 days, and when to send to
    them: their best local hour (and day, where their own opens name one), from their own
    opens and clicks shrunk toward the fleet's. Cached in Redis until the user's next event."""
    app = services(request)
    user_id = checked_user_id(request.match_info["user_id"])
    model = app.processor.item_model

    def answer(state: UserState) -> bytes:
        now_ms = app.clock.now_ms()
        timezone = state.traits.get("timezone")
        best = best_send_time(state.engagement_hours, model.send_hours)
        send_time = None
        if best is not None:
            send_time = {
                "hour": best.hour,
                "weekday": DAYS[best.weekday] if best.weekday is not None else None,
                "local": best.label,
                "timezone": timezone or "UTC",
                "confidence": best.confidence,
                "own_engagements": best.engagements,
                "next_send_at": format_time(next_occurrence(best, now_ms, timezone)),
            }
        x = propensity_features(state, now_ms)
        chances = {f"{target}_7d": round(scorer.predict_proba_one(x), 4) for target, scorer in model.propensity.items()}
        return orjson.dumps({"user_id": user_id, "propensity": chances or None, "send_time": send_time})

    return await _cached(app, user_id, f"predictions:{model.version}", answer)


async def _cached(app: ApiServices, user_id: str, name: str, answer: Callable[[UserState], bytes]) -> web.Response:
    """The cached answer, or `answer` computed from the user's state (an empty state for a
    user never seen) and cached. Answers depend on the user's state, whose change drops
    the user's hash, and on the model snapshot, whose offset is part of the field."""
    field = f"{name}:{app.processor.item_model.offset}"
    body = await app.prediction_cache.get(user_id, field)
    if body is None:
        state = stored_user(app, user_id)
        if isinstance(state, web.Response):
            if state.status != 404:
                return state
            state = UserState(user_id)
        body = answer(state)
        await app.prediction_cache.put(user_id, field, body)
    return web.Response(body=body, content_type="application/json")
