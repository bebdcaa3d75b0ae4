"""Which handler answers which method and path."""

from __future__ import annotations

from aiohttp import web

from app.api import learning, operations, schemas, segments, templates, unsubscribe, users
from app.api.services import TIDEMAIL, ApiServices


def add_routes(web_app: web.Application, services: ApiServices) -> None:
    web_app[TIDEMAIL] = services
    web_app.router.add_get("/health", operations.health)
    web_app.router.add_get("/metrics", operations.prometheus_metrics)
    web_app.router.add_get("/stats", operations.stats)
    web_app.router.add_post("/stats/reset", operations.reset_stats)
    web_app.router.add_get("/users/{user_id}", users.user_profile)
    web_app.router.add_get("/users/{user_id}/recommendations", users.user_recommendations)
    web_app.router.add_get("/users/{user_id}/predictions", users.user_predictions)
    web_app.router.add_get("/models", learning.models)
    web_app.router.add_get("/experiments", learning.list_experiments)
    web_app.router.add_get("/experiments/{name}", learning.show_experiment)
    web_app.router.add_get("/segments", segments.list_segments)
    web_app.router.add_get("/segments/{name}", segments.show_segment)
    web_app.router.add_get("/templates", templates.list_templates)
    web_app.router.add_get("/templates/{name}/preview", templates.preview_template)
    web_app.router.add_get("/schemas", schemas.list_schemas)
    web_app.router.add_get("/schemas/{name}", schemas.show_schema)
    web_app.router.add_get("/unsubscribe", unsubscribe.unsubscribe)
    # RFC 8058 one-click: mail clients POST to the List-Unsubscribe URL.
    web_app.router.add_post("/unsubscribe", unsubscribe.unsubscribe)
    if services.settings.allow_clock_control:
        web_app.router.add_post("/admin/clock", operations.advance_clock)
