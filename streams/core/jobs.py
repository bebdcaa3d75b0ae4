"""Email jobs: turning a flow's `JobRequest` into the rendered job published to Kafka."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models import interests
from models.interactions import Product
from models.reco import ItemModel
from streams.core.content import EmailRenderer
from streams.core.flow_engine import JobRequest
from streams.core.learning import bought_skus, owned_skus
from streams.core.state import UserState
from streams.core.unsubscribe import sign_token

UNSUBSCRIBE_TOKEN_TTL_MS = 90 * 86_400_000
RECOMMENDED = 6
ENGAGEMENT_SEGMENTS = (("highly_engaged", "high"), ("moderately_engaged", "moderate"), ("lapsed", "lapsed"))


@dataclass(frozen=True, slots=True)
class JobContext:
    """What job building needs besides the user: brand facts and secrets from settings."""

    brand: str
    shop_url: str
    postal_address: str
    unsubscribe_base_url: str
    unsubscribe_secret: bytes
    interest_half_life_days: float

    def product_view(self, product: Product | Mapping[str, Any], reason: str | None = None) -> dict[str, Any]:
        """A product as templates see it, with links into the shop."""
        # Not dataclasses.asdict: its deep copy costs ~10 us a product, six products a job.
        fields = (
            {"sku": product.sku, "name": product.name, "category": product.category, "price": product.price}
            if isinstance(product, Product)
            else dict(product)
        )
        sku = fields["sku"]
        return {
            **fields,
            "url": f"{self.shop_url}/p/{sku}",
            "image_url": f"{self.shop_url}/images/{sku}.jpg",
            "reason": reason,
        }


def build_job(
    request: JobRequest,
    the_job_id: str,
    state: UserState,
    renderer: EmailRenderer,
    ctx: JobContext,
    item_model: ItemModel,
    now_ms: int,
    send_at_ms: int,
    experiment: str | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """Render and assemble one job that governance allowed; raise `RenderError` when it cannot be."""
    address = state.email
    assert address is not None, "governance lets no job through without an address"
    unsubscribe_url = signed_unsubscribe_url(state.user_id, request.list_name, ctx, now_ms)
    context = email_context(state, ctx, item_model, unsubscribe_url, now_ms)
    context.update(flow=request.flow, step=request.step, variant=variant)
    rendered = renderer.render(request.template, context)
    now = format_time(now_ms)
    return {
        "job_id": the_job_id,
        "user_id": state.user_id,
        "to": address,
        "flow": request.flow,
        "step": request.step,
        "list": request.list_name,
        "category": request.category,
        "template": rendered.template,
        "template_version": rendered.template_version,
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "html": rendered.html,
        "text": rendered.text,
        "unsubscribe_url": unsubscribe_url,
        "send_at": format_time(send_at_ms),
        "created_at": now,
        "trigger_event_id": request.trigger_event_id,
        "experiment": experiment,
        "variant": variant,
    }


def signed_unsubscribe_url(user_id: str, list_name: str, ctx: JobContext, now_ms: int) -> str:
    token = sign_token(user_id, list_name, now_ms + UNSUBSCRIBE_TOKEN_TTL_MS, ctx.unsubscribe_secret)
    return f"{ctx.unsubscribe_base_url}?token={token}"


def email_context(
    state: UserState, ctx: JobContext, item_model: ItemModel, unsubscribe_url: str, now_ms: int
) -> dict[str, Any]:
    """The variables a template sees for this user (documented in `streams.core.content.CONTEXT`)."""
    strongest = [name for name, _ in interests.top(state.interests, now_ms, ctx.interest_half_life_days, n=3)]
    cart = state.cart
    # Nothing they already bought or have in the cart: the cart has its own block.
    owned = owned_skus(state)
    bought = bought_skus(state)
    picks = item_model.predict_top(state.recent_interactions, RECOMMENDED, owned, bought)
    popular = [sku for sku in item_model.popular[: RECOMMENDED + len(owned)] if sku not in owned]
    return {
        "user_id": state.user_id,
        "first_name": state.first_name,
        "email": state.email,
        "locale": state.traits.get("locale"),
        "country": state.traits.get("country"),
        "device": state.traits.get("device"),
        "traits": state.traits,
        "segments": sorted(state.segments),
        "engagement": engagement_level(state.segments),
        "interests": strongest,
        "top_interest": strongest[0] if strongest else None,
        "cart": {"cart_id": cart["cart_id"], "items": [ctx.product_view(item) for item in cart["items"].values()]}
        if cart
        else None,
        "recent_purchases": state.recent_purchases,
        "recommendations": [ctx.product_view(item_model.products[p.sku], p.reason) for p in picks],
        "popular": [ctx.product_view(item_model.products[sku], "popular") for sku in popular[:RECOMMENDED]],
        "brand": ctx.brand,
        "shop_url": ctx.shop_url,
        "postal_address": ctx.postal_address,
        "unsubscribe_url": unsubscribe_url,
    }


def engagement_level(segments: dict[str, int]) -> str:
    """From the engagement segments of the default set: high, moderate, lapsed, or new."""
    for segment, level in ENGAGEMENT_SEGMENTS:
        if segment in segments:
            return level
    return "new"


def format_time(millis: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    seconds, fraction = divmod(millis, 1000)
    return _format_second(seconds) + _FRACTIONS[fraction]


# Every change record and job formats an instant: a table lookup is faster than a format spec.
_FRACTIONS = tuple(f".{fraction:03d}Z" for fraction in range(1000))


@functools.lru_cache(maxsize=4096)
def _format_second(seconds: int) -> str:
    # Cached by the second: the outputs of a live stream share a few seconds, rarely a millisecond.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
