"""HTTP API served by the Faust worker's aiohttp server: health, metrics, users, segments,
templates and their previews, the unsubscribe link, and the contracts' JSON Schemas."""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.settings import Settings
from app.worker_stats import LatencySamples, RecoQuality
from models import bandits, interests
from models.bandits import Experiment
from models.send_time import best_send_time, next_occurrence
from streams import metrics
from streams.core.clock import Clock
from streams.core.errors import RenderError
from streams.core.jobs import format_time
from streams.core.learning import bought_skus, owned_skus
from streams.core.learning import features as propensity_features
from streams.core.processing import BatchProcessor
from streams.core.schemas import SCHEMA_NAMES, SUFFIX, schema, schema_bytes, schema_name
from streams.core.segments import SegmentBook
from streams.core.state import UserState
from streams.core.unsubscribe import verify_token
from streams.kafka.clients import EventPublisher
from streams.kafka.lookup import NotOwned, UserLookup
from streams.kafka.model_feed import SnapshotFeed
from streams.kafka.ownership import PartitionOwnership
from streams.kafka.segment_sizes import SegmentSizes
from streams.serving.prediction_cache import PredictionCache

MAX_RECOMMENDATIONS = 100


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Everything the API reads or calls, built with the worker."""

    settings: Settings
    clock: Clock
    # Rendering, templates, experiments, and the item model the worker ranks with.
    processor: BatchProcessor
    segments: SegmentBook
    ownership: PartitionOwnership
    users: UserLookup
    segment_sizes: SegmentSizes
    snapshots: SnapshotFeed
    prediction_cache: PredictionCache
    events: EventPublisher
    latency: LatencySamples
    reco_quality: RecoQuality


TIDEMAIL = web.AppKey("tidemail", ApiServices)


def add_routes(web_app: web.Application, services: ApiServices) -> None:
    web_app[TIDEMAIL] = services
    web_app.router.add_get("/health", health)
    web_app.router.add_get("/metrics", prometheus_metrics)
    web_app.router.add_get("/stats", stats)
    web_app.router.add_post("/stats/reset", reset_stats)
    web_app.router.add_get("/users/{user_id}", user_profile)
    web_app.router.add_get("/users/{user_id}/recommendations", user_recommendations)
    web_app.router.add_get("/users/{user_id}/predictions", user_predictions)
    web_app.router.add_get("/models", models)
    web_app.router.add_get("/experiments", list_experiments)
    web_app.router.add_get("/experiments/{name}", show_experiment)
    web_app.router.add_get("/segments", list_segments)
    web_app.router.add_get("/segments/{name}", show_segment)
    web_app.router.add_get("/templates", list_templates)
    web_app.router.add_get("/templates/{name}/preview", preview_template)
    web_app.router.add_get("/schemas", list_schemas)
    web_app.router.add_get("/schemas/{name}", show_schema)
    web_app.router.add_get("/unsubscribe", unsubscribe)
    # RFC 8058 one-click: mail clients POST to the List-Unsubscribe URL.
    web_app.router.add_post("/unsubscribe", unsubscribe)
    if services.settings.allow_clock_control:
        web_app.router.add_post("/admin/clock", advance_clock)


def _services(request: web.Request) -> ApiServices:
    return request.app[TIDEMAIL]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    owned = sorted(_services(request).ownership.owned)
    return _json({"status": "ok", "owned_partitions": owned})


async def prometheus_metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def stats(request: web.Request) -> web.Response:
    """Processed count, and with `?percentiles` latency percentiles since the last reset;
    the benchmark reads these."""
    return _json(_services(request).latency.report("percentiles" in request.query))


async def reset_stats(request: web.Request) -> web.Response:
    _services(request).latency.reset()
    return _json({"reset": True})


def _stored_user(app: ApiServices, user_id: str) -> UserState | web.Response:
    """The user's state from this worker's tables, or the error response to give instead."""
    state = app.users.get(user_id)
    if isinstance(state, NotOwned):
        error = f"user {user_id!r} lives in partition {state.partition}, not owned by this worker"
        return _json({"error": error}, 421)
    if state is None:
        return _json({"error": f"no user {user_id!r}"}, 404)
    return state


async def user_profile(request: web.Request) -> web.Response:
    app = _services(request)
    state = _stored_user(app, request.match_info["user_id"])
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
        "flows_entered": state.flows_entered,
        "segments": state.segments,
        "next_check_ms": state.next_check_ms,
        "partition": partition,
        "applied_offset": state.applied_offset,
    }
    return _json(summary)


async def user_recommendations(request: web.Request) -> web.Response:
    """Top-k products for a user, each with its score and why (model, rule or popular);
    cached in Redis until the user's next event. A user never seen gets popular products."""
    app = _services(request)
    user_id = request.match_info["user_id"]
    try:
        k = int(request.query.get("k", "10"))
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_RECOMMENDATIONS:
        return _json({"error": f"k must be a whole number from 1 to {MAX_RECOMMENDATIONS}"}, 400)
    model = app.processor.item_model

    def answer(state: UserState) -> bytes:
        bought = bought_skus(state)
        picks = model.predict_top(state.recent_interactions, k, owned_skus(state), bought)
        items = [{**asdict(model.products[p.sku]), "score": p.score, "reason": p.reason} for p in picks]
        return orjson.dumps({"user_id": user_id, "items": items, "model_offset": model.offset})

    return await _cached(app, user_id, f"recommendations:{k}:{model.version}", answer)


async def user_predictions(request: web.Request) -> web.Response:
    """The chance this user opens, clicks and buys in the next 7 days, and when to send to
    them: their best hour of the week, from their own opens and clicks smoothed by the
    fleet's. Cached in Redis until the user's next event."""
    app = _services(request)
    user_id = request.match_info["user_id"]
    model = app.processor.item_model

    def answer(state: UserState) -> bytes:
        now_ms = app.clock.now_ms()
        timezone = state.traits.get("timezone")
        best = best_send_time(state.engagement_hours, model.send_hours)
        send_time = None
        if best is not None:
            send_time = {
                "hour_of_week": best.hour_of_week,
                "local": best.label,
                "timezone": timezone or "UTC",
                "confidence": best.confidence,
                "own_engagements": best.engagements,
                "next_send_at": format_time(next_occurrence(best.hour_of_week, now_ms, timezone)),
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
        state = _stored_user(app, user_id)
        if isinstance(state, web.Response):
            if state.status != 404:
                return state
            state = UserState(user_id)
        body = answer(state)
        await app.prediction_cache.put(user_id, field, body)
    return web.Response(body=body, content_type="application/json")


async def models(request: web.Request) -> web.Response:
    """The models this worker predicts with, and their prequential quality."""
    app = _services(request)
    body = {
        "recommendations": {
            **app.snapshots.status(),
            "weights": app.settings.reco_weights,
            "quality": app.reco_quality.report(),
        },
        # Measured by the trainer, before it learns each example; shipped in the snapshot.
        "propensity": app.processor.item_model.propensity_quality,
    }
    return _json(body)


async def list_experiments(request: web.Request) -> web.Response:
    app = _services(request)
    experiments = [_experiment_view(app, e) for e in app.processor.experiments.values()]
    return _json({"experiments": experiments})


async def show_experiment(request: web.Request) -> web.Response:
    """An experiment's variants and holdout: sends, opens, clicks, purchases, rates, lift."""
    app = _services(request)
    name = request.match_info["name"]
    for experiment in app.processor.experiments.values():
        if experiment.name == name:
            return _json(_experiment_view(app, experiment))
    return _json({"error": f"no experiment {name!r}"}, 404)


def _experiment_view(app: ApiServices, experiment: Experiment) -> dict[str, Any]:
    # Counted by the trainer over the whole fleet; as of the snapshot this worker holds.
    return bandits.report(experiment, app.processor.item_model.bandits)


async def list_segments(request: web.Request) -> web.Response:
    """Every defined segment with its size in the partitions this worker owns."""
    app = _services(request)
    sizes = app.segment_sizes.totals()
    body = [
        {"name": segment.name, "description": segment.description, "size": sizes.get(segment.name, 0)}
        for segment in app.segments.segments
    ]
    return _json({"definition_version": app.segments.version, "segments": body})


async def show_segment(request: web.Request) -> web.Response:
    app = _services(request)
    name = request.match_info["name"]
    segment = app.segments.by_name.get(name)
    if segment is None:
        return _json({"error": f"no segment {name!r}"}, 404)
    limit = min(int(request.query.get("limit", "20")), 200)
    sample = app.users.members(name, limit)
    body = {
        "name": segment.name,
        "description": segment.description,
        "definition": segment.definition["condition"],
        "definition_version": app.segments.version,
        "size": app.segment_sizes.totals().get(name, 0),
        "sample": sample,
    }
    return _json(body)


async def list_templates(request: web.Request) -> web.Response:
    versions = _services(request).processor.template_versions
    return _json({"templates": [{"name": name, "version": version} for name, version in sorted(versions.items())]})


async def preview_template(request: web.Request) -> web.Response:
    """The email as a job for this user would carry it now; without `user_id`, for a user we know nothing about."""
    app = _services(request)
    name = request.match_info["name"]
    if name not in app.processor.template_versions:
        return _json({"error": f"no template {name!r}"}, 404)
    user_id = request.query.get("user_id")
    state = _stored_user(app, user_id) if user_id else UserState("preview")
    if isinstance(state, web.Response):
        return state
    try:
        email = app.processor.preview(name, state)
    except RenderError as e:
        return _json({"error": str(e)}, 500)
    if request.query.get("format") == "json":
        return _json(
            {
                "template": email.template,
                "template_version": email.template_version,
                "subject": email.subject,
                "preheader": email.preheader,
                "html": email.html,
                "text": email.text,
            }
        )
    return web.Response(text=email.html, content_type="text/html")


async def list_schemas(request: web.Request) -> web.Response:
    body = [{"name": name, "title": schema(name)["title"], "url": f"/schemas/{name}"} for name in SCHEMA_NAMES]
    return _json({"schemas": body})


async def show_schema(request: web.Request) -> web.Response:
    """A contract's JSON Schema, byte for byte as shipped in `streams/schemas/`."""
    requested = request.match_info["name"]
    name = schema_name(requested)
    if name is None:
        error = f"no schema {requested!r}; known: {', '.join(SCHEMA_NAMES)} (the `{SUFFIX}` suffix is optional)"
        return _json({"error": error}, 404)
    return web.Response(body=schema_bytes(name), content_type="application/schema+json")


async def unsubscribe(request: web.Request) -> web.Response:
    """Verify a signed link and turn it into an `unsubscribe` event for the stream to apply."""
    app = _services(request)
    token = request.query.get("token", "")
    verified = verify_token(token, app.settings.unsubscribe_secret.reveal().encode(), app.clock.now_ms())
    if verified is None:
        # Deliberately vague: whether the link was forged, altered or expired is not the visitor's to learn.
        metrics.UNSUBSCRIBE_REQUESTS.labels("refused").inc()
        return _page("Link not valid", "This unsubscribe link is not valid or has expired.", 400)
    user_id, list_name = verified
    # The token names the event, so clicking the link twice is one event, deduplicated downstream.
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidemail-unsubscribe:{token}"))
    event = {
        "event_id": event_id,
        "user_id": user_id,
        "type": "unsubscribe",
        "timestamp": app.clock.now_ms(),
        "properties": {"list": list_name},
    }
    await app.events.submit(user_id, orjson.dumps(event))
    metrics.UNSUBSCRIBE_REQUESTS.labels("accepted").inc()
    return _page(
        "Unsubscribed", f"You will get no more {html.escape(list_name)} email from {html.escape(app.settings.brand)}."
    )


def _page(title: str, message: str, status: int = 200) -> web.Response:
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f'<body style="font-family: Helvetica, Arial, sans-serif; max-width: 480px; margin: 48px auto">'
        f"<h1>{title}</h1><p>{message}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


async def advance_clock(request: web.Request) -> web.Response:
    app = _services(request)
    body = await request.json()
    app.clock.advance(int(body["advance_ms"]))
    return _json({"now_ms": app.clock.now_ms()})
