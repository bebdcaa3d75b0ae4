"""Any worker answers for any user: a request about a user of a partition another worker
owns goes on to that worker, with the caller's token, and its answer comes back as it is.

The owner re-checks the token: every worker of a deployment takes the same tokens. A
forwarded request carries `Tidemail-Forwarded-By`, and a worker never forwards such a
request again (it answers 421 if the user is not its own), so no request goes round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from app.api.params import checked_user_id
from app.api.services import json_response, services
from streams import metrics
from streams.core.routing import Forward, Local, Misdirected, route

log = logging.getLogger(__name__)

FORWARDED_BY = "Tidemail-Forwarded-By"
# On a forwarded answer: the worker that gave it.
ANSWERED_BY = "Tidemail-Answered-By"
# A worker on the same network answers in milliseconds; one that does not in a second is gone or stuck.
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=1)
# A rebalance in flight moves partitions within a second or so: wait this long, read the layout again, try once more.
RETRY_PAUSE_S = 0.25
RETRY_AFTER_S = 1
PASSED_ON = (hdrs.AUTHORIZATION, hdrs.ACCEPT)
PASSED_BACK = (hdrs.CONTENT_TYPE, hdrs.CACHE_CONTROL, hdrs.RETRY_AFTER, hdrs.WWW_AUTHENTICATE)

UserKey = Callable[[web.Request], str | None]
# The routes about one user, and where each finds the user's id.
USER_KEYS = web.AppKey("user_keys", dict[web.AbstractRoute, UserKey])
PEERS = web.AppKey("peers", aiohttp.ClientSession)


def user_in_path(request: web.Request) -> str | None:
    return checked_user_id(request.match_info["user_id"])


def user_in_query(request: web.Request) -> str | None:
    wanted = request.query.get("user_id")
    return checked_user_id(wanted) if wanted else None


async def peer_session(web_app: web.Application) -> AsyncIterator[None]:
    """One pooled client for every request to other workers, kept while the server runs."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        web_app[PEERS] = session
        yield


@web.middleware
async def answer_where_owned(request: web.Request, handler: Handler) -> web.StreamResponse:
    key_of = request.app[USER_KEYS].get(request.match_info.route)
    user_id = key_of(request) if key_of is not None else None
    if user_id is None:
        return await handler(request)
    app = services(request)
    partition = app.users.partition_of(user_id)
    for attempt in range(2):
        if attempt:
            await asyncio.sleep(RETRY_PAUSE_S)
        decision = route(partition, app.ownership.owned, app.fleet(), FORWARDED_BY in request.headers)
        if isinstance(decision, Local):
            return await handler(request)
        if isinstance(decision, Misdirected):
            error = f"user {user_id!r} lives in partition {partition}, not owned by this worker"
            return json_response({"error": error}, 421)
        if isinstance(decision, Forward):
            answer = await _forward(request, decision.url)
            if answer is not None:
                return answer
    metrics.API_FORWARDS.labels("unavailable").inc()
    error = f"partition {partition} of user {user_id!r} is moving between workers; retry in {RETRY_AFTER_S} s"
    body = orjson.dumps({"error": error})
    headers = {hdrs.RETRY_AFTER: str(RETRY_AFTER_S)}
    return web.Response(body=body, status=503, headers=headers, content_type="application/json")


async def _forward(request: web.Request, owner: str) -> web.Response | None:
    """The owner's answer, or None when it did not give one (gone, or no longer the owner)."""
    started = time.perf_counter()
    got = await _ask(request, owner, str(request.rel_url), request.method)
    if got is None:
        return None
    status, headers, body = got
    metrics.API_FORWARD_SECONDS.observe(time.perf_counter() - started)
    if status == 421:
        metrics.API_FORWARDS.labels("misdirected").inc()
        return None
    metrics.API_FORWARDS.labels("answered").inc()
    passed: dict[str, str] = {name: headers[name] for name in PASSED_BACK if name in headers}
    passed[ANSWERED_BY] = owner
    return web.Response(body=body, status=status, headers=passed)


async def ask_fleet(request: web.Request, path: str) -> dict[str, Any | None]:
    """Each other worker's JSON answer to GET `path` (with the caller's token), or None
    from one that gave no 200."""
    others = services(request).fleet().urls[1:]
    answers = await asyncio.gather(*(_ask(request, url, path, "GET") for url in others))
    return {url: _json_or_none(got) for url, got in zip(others, answers, strict=True)}


def _json_or_none(got: tuple[int, Mapping[str, str], bytes] | None) -> Any | None:
    if got is None or got[0] != 200:
        return None
    try:
        return orjson.loads(got[2])
    except orjson.JSONDecodeError:
        return None


async def _ask(request: web.Request, url: str, path: str, method: str) -> tuple[int, Mapping[str, str], bytes] | None:
    headers: dict[str, str] = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
    headers[FORWARDED_BY] = services(request).fleet().self_url
    try:
        session = request.app[PEERS]
        async with session.request(
            method, url.rstrip("/") + path, headers=headers, timeout=FORWARD_TIMEOUT, allow_redirects=False
        ) as answer:
            return answer.status, answer.headers, await answer.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        metrics.API_FORWARDS.labels("unreachable").inc()
        log.warning("worker %s did not answer %s %s: %r", url, method, path, e)
        return None
