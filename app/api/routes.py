"""Which handler answers which method and path, and who may call it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from app.api import learning, operations, privacy, schemas, segments, templates, unsubscribe, users
from app.api.auth import ACCESS, CREDENTIALS, Access, Credentials, authenticate
from app.api.forwarding import USER_KEYS, UserKey, answer_where_owned, peer_session, user_in_path, user_in_query
from app.api.params import bad_requests
from app.api.services import TIDEMAIL, ApiServices


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    access: Access = Access.API
    # Where a route about one user finds their id: the worker owning the user answers it.
    user_key: UserKey | None = None


ROUTES = (
    # Probes and scrapers, and the link in every email: no token.
    Route("GET", "/health", operations.health, Access.PUBLIC),
    Route("GET", "/ready", operations.ready, Access.PUBLIC),
    Route("GET", "/metrics", operations.prometheus_metrics, Access.PUBLIC),
    Route("GET", "/unsubscribe", unsubscribe.unsubscribe, Access.PUBLIC),
    # RFC 8058 one-click: mail clients POST to the List-Unsubscribe URL.
    Route("POST", "/unsubscribe", unsubscribe.unsubscribe, Access.PUBLIC),
    Route("GET", "/stats", operations.stats),
    Route("POST", "/stats/reset", operations.reset_stats, Access.ADMIN),
    Route("GET", "/users/{user_id}", users.user_profile, user_key=user_in_path),
    Route("GET", "/users/{user_id}/recommendations", users.user_recommendations, user_key=user_in_path),
    Route("GET", "/users/{user_id}/predictions", users.user_predictions, user_key=user_in_path),
    Route("GET", "/users/{user_id}/export", privacy.export_user, user_key=user_in_path),
    Route("POST", "/users/{user_id}/erase", privacy.erase_user, Access.ADMIN),
    Route("GET", "/models", learning.models),
    Route("GET", "/experiments", learning.list_experiments),
    Route("GET", "/experiments/{name}", learning.show_experiment),
    Route("GET", "/segments", segments.list_segments),
    Route("GET", "/segments/{name}", segments.show_segment),
    Route("GET", "/templates", templates.list_templates),
    Route("GET", "/templates/{name}/preview", templates.preview_template, user_key=user_in_query),
    Route("GET", "/schemas", schemas.list_schemas),
    Route("GET", "/schemas/{name}", schemas.show_schema),
)
# Only with TIDEMAIL_ALLOW_CLOCK_CONTROL (tests, demos).
CLOCK_ROUTES = (Route("POST", "/admin/clock", operations.advance_clock, Access.ADMIN),)


def add_routes(web_app: web.Application, services: ApiServices) -> None:
    """The API's routes on `web_app`, behind its token check and its 400s for malformed input."""
    web_app[TIDEMAIL] = services
    web_app[CREDENTIALS] = Credentials.from_settings(services.settings)
    web_app[ACCESS] = access = {}
    web_app[USER_KEYS] = user_keys = {}
    clock = CLOCK_ROUTES if services.settings.allow_clock_control else ()
    for route in (*ROUTES, *clock):
        resource = web_app.router.add_resource(route.path)
        # A GET answers HEAD too, as aiohttp's add_get would have it.
        for method in ("HEAD", "GET") if route.method == "GET" else (route.method,):
            added = resource.add_route(method, route.handler)
            access[added] = route.access
            if route.user_key is not None:
                user_keys[added] = route.user_key
    # Outermost first: a request is authenticated and checked before it is forwarded.
    web_app.middlewares.extend((authenticate, bad_requests, answer_where_owned))
    web_app.cleanup_ctx.append(peer_session)
