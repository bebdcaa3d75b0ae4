"""Render cost of a typical job, against compiling its MJML per job, in the same run.

The typical job is the win-back email for a known user: layout, greeting, segment
offer, six recommendations, location offer and footer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import mrml

from app.settings import Settings
from models.item_trainer import ItemTrainer
from models.reco import DEFAULT_WEIGHTS, ItemModel, remember
from streams.core.content import EmailRenderer
from streams.core.events import validate_event
from streams.core.flow_engine import JobRequest
from streams.core.jobs import JobContext, build_job, email_context
from streams.core.learning import interactions_of
from streams.core.state import StatePolicy, UserState, apply

TEMPLATE = "winback"
NOW_MS = 1_795_852_800_000


@dataclass(frozen=True, slots=True)
class RenderCost:
    name: str
    micros: float


def measure_render_cost(rounds: int = 2_000) -> list[RenderCost]:
    settings = Settings.from_env()
    renderer = EmailRenderer(settings.templates_dir, defaults={"brand": settings.brand})
    ctx = JobContext(settings.brand, settings.shop_url, "1 Harbour Street", settings.unsubscribe_base_url, b"k", 14.0)
    item_model, state = _typical_user()
    context = email_context(state, ctx, item_model, "https://shop/unsubscribe?token=t", NOW_MS)
    assert len(context["recommendations"]) == 6, "the typical job shows six recommendations"
    request = JobRequest("winback", 1, TEMPLATE, trigger_key="bench", trigger_event_id="e", at_ms=NOW_MS)
    render_mjml = renderer.render_mjml(TEMPLATE, context)

    def per_job_mjml() -> None:
        # The obvious alternative: render the MJML with the user's data, then compile it.
        mrml.to_html(render_mjml())

    return [
        RenderCost("render (compiled templates)", _micros(lambda: renderer.render(TEMPLATE, context), rounds)),
        RenderCost(
            "whole job (context, token, render)",
            _micros(lambda: build_job(request, "job", state, renderer, ctx, item_model, NOW_MS, NOW_MS), rounds),
        ),
        # Only the HTML part, so the ratio below understates the gain.
        RenderCost("baseline: HTML part alone, MJML per job", _micros(per_job_mjml, rounds // 4)),
    ]


def report_render_cost(costs: list[RenderCost]) -> str:
    compiled, _, baseline = costs
    lines = [f"{c.name:<40}{c.micros:>10,.0f} us" for c in costs]
    lines.append(
        f"rendering a typical job costs {compiled.micros / 1000:.2f} ms (target < 1 ms), "
        f"{baseline.micros / compiled.micros:.1f}x faster than compiling MJML per job"
    )
    return "\n".join(lines)


def _typical_user() -> tuple[ItemModel, UserState]:
    trainer = ItemTrainer(half_life_days=14, capacity=1_000)
    state = UserState("u1", traits={"first_name": "Ann", "email": "ann@example.com", "country": "GB"})
    docs = [
        {"type": "cart_add", "properties": {"cart_id": f"c{n}", "item": _item(category, n)}}
        for n in range(24)
        for category in ("outdoor", "running", "books")
    ]
    docs += [{"type": "page_view", "properties": {"url": "/p", "category": "outdoor", "sku": "OUT-001"}}] * 3
    docs.append({"type": "purchase", "properties": _purchase()})
    for n, doc in enumerate(docs):
        event = validate_event({"event_id": f"e{n}", "user_id": "u1", "timestamp": NOW_MS - 1000 + n, **doc}, b"u1")
        state = apply(state, event, StatePolicy())
        for interaction, product in interactions_of(event, DEFAULT_WEIGHTS):
            trainer.learn_one((interaction, product))
            state.recent_interactions = remember(state.recent_interactions, interaction)
    state.segments = {"big_spenders": NOW_MS, "highly_engaged": NOW_MS}
    return trainer.export(), state


def _item(category: str, n: int) -> dict[str, object]:
    sku = f"{category[:3].upper()}-{n:03d}"
    return {"sku": sku, "name": f"{category.title()} item {n}", "category": category, "price": 9.5 + n, "quantity": 1}


def _purchase() -> dict[str, object]:
    return {"order_id": "o1", "items": [_item("outdoor", 0)], "total": 9.5, "currency": "GBP"}


def _micros(work: Callable[[], object], rounds: int) -> float:
    for _ in range(50):
        work()
    started = time.perf_counter()
    for _ in range(rounds):
        work()
    return (time.perf_counter() - started) / rounds * 1e6
