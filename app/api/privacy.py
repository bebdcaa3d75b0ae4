"""A person's rights over their data: erasure (GDPR article 17; admin token) and export
(articles 15 and 20; API token)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from app.api.params import checked_user_id
from app.api.services import ApiServices, json_response, services
from app.api.users import stored_user
from streams.core.erasure import erase_event
from streams.core.jobs import format_time
from streams.core.state import UserState
from streams.core.state_codec import state_document


async def erase_user(request: web.Request) -> web.Response:
    """Publish an `erase` event for the user: the worker that owns them erases them in order
    with their other events (any worker takes the request). 202: it is on its way."""
    app = services(request)
    user_id = checked_user_id(request.match_info["user_id"])
    event = erase_event(user_id, f"erase-{uuid.uuid4()}", app.clock.now_ms(), "api")
    await app.events.submit(user_id, orjson.dumps(event))
    return json_response({"user_id": user_id, "event_id": event["event_id"], "status": "accepted"}, 202)


async def export_user(request: web.Request) -> web.Response:
    """Everything this deployment holds about the user that a worker can read, as JSON, and
    where else records keyed by their id are kept."""
    app = services(request)
    state = stored_user(app, checked_user_id(request.match_info["user_id"]))
    if isinstance(state, web.Response):
        return state
    cached = await app.prediction_cache.entries(state.user_id)
    export = {
        "user_id": state.user_id,
        "exported_at": format_time(app.clock.now_ms()),
        "partition": app.users.partition_of(state.user_id),
        # Every field of the stored state, named, with absolute instants (see docs/contracts.md, Per-user state).
        "state": state_document(state),
        "experiments": _experiments(app, state),
        "cached_predictions": None if cached is None else {f: orjson.loads(v) for f, v in cached.items()},
        "elsewhere": _elsewhere(app),
    }
    return json_response(export)


def _experiments(app: ApiServices, state: UserState) -> dict[str, Any]:
    """Per experiment: whether the user is in its holdout, and the variant fixed for them (split
    experiments; the others choose per email, as `state.experiment_jobs` records)."""
    found = {}
    for name, experiment in app.processor.experiments.items():
        fixed = experiment.assign(state.user_id, "", {}) if experiment.policy == "split" else None
        found[name] = {"held_out": experiment.is_held_out(state.user_id), "variant": fixed}
    return found


def _elsewhere(app: ApiServices) -> dict[str, str]:
    """Records keyed by the user's id that this export does not read, and until when they stay."""
    s = app.settings
    retained = "until the topic's retention deletes them"
    return {
        s.events_topic: f"the events received, {retained}",
        s.jobs_topic: f"the emails built (address and content), {retained}",
        s.deliveries_topic: f"what became of each email, {retained}",
        s.segment_changes_topic: f"segments entered and left, {retained}",
        s.dead_letter_topic: f"events and emails that could not be processed, {retained}",
        s.interactions_topic: f"products viewed, carted and bought, {retained}",
        "trainer": "the last products the user touched and bought, in the trainer's memory until erased",
        "redis": "delivery claims and outcomes by job id, until TIDEMAIL_DELIVERY_CLAIM_TTL_S",
    }
