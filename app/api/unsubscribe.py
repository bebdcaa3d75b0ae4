"""The signed unsubscribe link every email carries."""

from __future__ import annotations

import html
import uuid

import orjson
from aiohttp import web

from app.api.services import services
from streams import metrics
from streams.core.unsubscribe import verify_token


async def unsubscribe(request: web.Request) -> web.Response:
    """Verify a signed link and turn it into an `unsubscribe` event for the stream to apply."""
    app = services(request)
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
