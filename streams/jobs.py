"""Email jobs: turning a flow's `JobRequest` into the rendered job published to Kafka."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models import interests
from streams.content import EmailRenderer
from streams.errors import UndeliverableJob
from streams.flows import JobRequest, job_id
from streams.state import UserState
from streams.unsubscribe import sign_token

UNSUBSCRIBE_TOKEN_TTL_MS = 90 * 86_400_000


@dataclass(frozen=True, slots=True)
class JobContext:
    """What job building needs besides the user: brand facts and secrets from settings."""

    brand: str
    shop_url: str
    postal_address: str
    unsubscribe_base_url: str
    unsubscribe_secret: bytes
    interest_half_life_days: float


def build_job(
    request: JobRequest, state: UserState, renderer: EmailRenderer, ctx: JobContext, now_ms: int
) -> dict[str, Any]:
    """Render and assemble one job; raise `UndeliverableJob` or `RenderError` when it cannot be."""
    address = state.email
    if address is None:
        raise UndeliverableJob(
            f"cannot send {request.flow!r} step {request.step}: user {state.user_id!r} has no email address"
        )
    token = sign_token(state.user_id, request.list_name, now_ms + UNSUBSCRIBE_TOKEN_TTL_MS, ctx.unsubscribe_secret)
    unsubscribe_url = f"{ctx.unsubscribe_base_url}?token={token}"
    rendered = renderer.render(request.template, email_context(state, ctx, unsubscribe_url, now_ms))
    now = format_time(now_ms)
    return {
        "job_id": job_id(request.flow, request.step, state.user_id, request.trigger_key),
        "user_id": state.user_id,
        "to": address,
        "flow": request.flow,
        "step": request.step,
        "list": request.list_name,
        "template": rendered.template,
        "template_version": rendered.template_version,
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "html": rendered.html,
        "text": rendered.text,
        "unsubscribe_url": unsubscribe_url,
        "send_at": now,
        "created_at": now,
        "trigger_event_id": request.trigger_event_id,
    }


def email_context(state: UserState, ctx: JobContext, unsubscribe_url: str, now_ms: int) -> dict[str, Any]:
    """The variables a template sees for this user."""
    strongest = interests.top(state.interests, now_ms, ctx.interest_half_life_days, n=3)
    return {
        "user_id": state.user_id,
        "first_name": state.first_name,
        "locale": state.traits.get("locale"),
        "country": state.traits.get("country"),
        "traits": state.traits,
        "interests": [name for name, _ in strongest],
        "top_interest": strongest[0][0] if strongest else None,
        "cart": state.cart,
        "recent_purchases": state.recent_purchases,
        "brand": ctx.brand,
        "shop_url": ctx.shop_url,
        "postal_address": ctx.postal_address,
        "unsubscribe_url": unsubscribe_url,
    }


def format_time(millis: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    seconds, fraction = divmod(millis, 1000)
    return f"{_format_second(seconds)}.{fraction:03d}Z"


@functools.lru_cache(maxsize=4096)
def _format_second(seconds: int) -> str:
    # Cached by the second: the outputs of a live stream share a few seconds, rarely a millisecond.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
