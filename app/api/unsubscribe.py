"""The signed unsubscribe link every email carries: a POST unsubscribes (RFC 8058 one-click,
what mail clients send), a GET asks first."""

from __future__ import annotations

import html
import uuid

import orjson
from aiohttp import web

from app.api.services import ApiServices, services
from streams import metrics
from streams.core.unsubscribe import verify_token


async def unsubscribe(request: web.Request) -> web.Response:
    """Verify a signed link; a POST turns it into an `unsubscribe` event for the stream to
    apply, a GET (or HEAD) shows a page whose button POSTs it. Link scanners of corporate
    mail and previews follow every GET: a GET that unsubscribed would unsubscribe people who
    never clicked."""
    app = services(request)
    token = request.query.get("token", "")
    verified = verify_token(token, app.settings.unsubscribe_secret.reveal().encode(), app.clock.now_ms())
    if verified is None:
        # Deliberately vague: whether the link was forged, altered or expired is not the visitor's to learn.
        metrics.UNSUBSCRIBE_REQUESTS.labels("refused").inc()
        return _page("Link not valid", "<p>This unsubscribe link is not valid or has expired.</p>", 400)
    user_id, list_name = verified
    what = f"{html.escape(list_name)} email from {html.escape(app.settings.brand)}"
    if request.method != "POST":
        # The form posts to this same link; its field is the one RFC 8058 clients send.
        form = (
            f'<form method="post" action="?token={html.escape(token)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit" style="font-size: 1.1em; padding: 8px 20px">Unsubscribe</button></form>'
        )
        return _page("Unsubscribe?", f"<p>Stop getting {what}?</p>{form}")
    await _publish(app, token, user_id, list_name)
    metrics.UNSUBSCRIBE_REQUESTS.labels("accepted").inc()
    return _page("Unsubscribed", f"<p>You will get no more {what}.</p>")


async def _publish(app: ApiServices, token: str, user_id: str, list_name: str) -> None:
    # The token names the event, so posting the link twice is one event, deduplicated downstream.
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidemail-unsubscribe:{token}"))
    event = {
        "event_id": event_id,
        "user_id": user_id,
        "type": "unsubscribe",
        "timestamp": app.clock.now_ms(),
        "properties": {"list": list_name},
    }
    await app.events.submit(user_id, orjson.dumps(event))


def _page(title: str, content: str, status: int = 200) -> web.Response:
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f'<body style="font-family: Helvetica, Arial, sans-serif; max-width: 480px; margin: 48px auto">'
        f"<h1>{title}</h1>{content}</body></html>"
    )
    # A page about one person's link: no shared cache keeps it.
    return web.Response(text=body, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})
