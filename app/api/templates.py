"""The email templates and their previews, rendered as a job would carry them."""

from __future__ import annotations

from aiohttp import web

from app.api.params import checked_user_id, choice
from app.api.services import json_response, services
from app.api.users import stored_user
from streams.core.errors import RenderError
from streams.core.state import UserState


async def list_templates(request: web.Request) -> web.Response:
    versions = services(request).processor.template_versions
    return json_response(
        {"templates": [{"name": name, "version": version} for name, version in sorted(versions.items())]}
    )


async def preview_template(request: web.Request) -> web.Response:
    """The email as a job for this user would carry it now; without `user_id`, for a user we know nothing about."""
    app = services(request)
    name = request.match_info["name"]
    if name not in app.processor.template_versions:
        return json_response({"error": f"no template {name!r}"}, 404)
    output = choice(request, "format", ("html", "json"))
    wanted = request.query.get("user_id")
    state = stored_user(app, checked_user_id(wanted)) if wanted else UserState("preview")
    if isinstance(state, web.Response):
        return state
    try:
        email = app.processor.preview(name, state)
    except RenderError as e:
        return json_response({"error": str(e)}, 500)
    if output == "json":
        return json_response(
            {
                "template": email.template,
                "template_version": email.template_version,
                "subject": email.subject,
                "preheader": email.preheader,
                "html": email.html,
                "text": email.text,
            }
        )
    return web.Response(text=email.html, content_type="text/html")
