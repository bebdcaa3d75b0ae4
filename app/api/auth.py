"""Bearer-token authentication of the worker's API: each route is public, takes an API token,
or takes an admin token; an admin token opens every route."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from app.settings import Settings
from streams import metrics


class Access(Enum):
    PUBLIC = "public"
    API = "api"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The tokens a request may present, as bytes for constant-time comparison."""

    api: tuple[bytes, ...]
    admin: tuple[bytes, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        return cls(
            tuple(token.encode() for token in settings.api_bearer_tokens),
            tuple(token.encode() for token in settings.admin_bearer_tokens),
        )

    def access_of(self, presented: bytes) -> Access | None:
        """What `presented` opens: ADMIN, API, or nothing."""
        # Every token is compared, so the time taken says nothing about which one matched.
        admin, api = _matches(presented, self.admin), _matches(presented, self.api)
        if admin:
            return Access.ADMIN
        return Access.API if api else None


def _matches(presented: bytes, tokens: tuple[bytes, ...]) -> bool:
    found = False
    for token in tokens:
        found |= hmac.compare_digest(presented, token)
    return found


# What each registered route takes; a request matching none (404, 405, Faust's own pages) takes an API token.
ACCESS = web.AppKey("access", dict[web.AbstractRoute, Access])
CREDENTIALS = web.AppKey("credentials", Credentials)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    required = request.app[ACCESS].get(request.match_info.route, Access.API)
    if required is Access.PUBLIC:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _refused(401, "no_token", "this route needs `Authorization: Bearer <token>`", "")
    granted = request.app[CREDENTIALS].access_of(token.encode("utf-8", "surrogateescape"))
    if granted is None:
        return _refused(401, "bad_token", "the bearer token is not valid", ', error="invalid_token"')
    if required is Access.ADMIN and granted is not Access.ADMIN:
        return _refused(403, "not_admin", "this route needs an admin token", ', error="insufficient_scope"')
    return await handler(request)


def _refused(status: int, reason: str, error: str, challenge: str) -> web.Response:
    metrics.API_REFUSALS.labels(reason).inc()
    # RFC 6750: the challenge names the scheme, and for a token presented, what was wrong with it.
    headers = {"WWW-Authenticate": f'Bearer realm="tidemail"{challenge}'}
    body = orjson.dumps({"error": error})
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")
