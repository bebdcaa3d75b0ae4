"""The event and email-job contracts' JSON Schemas, as shipped in `streams/schemas/`."""

from __future__ import annotations

from aiohttp import web

from app.api.services import json_response
from streams.core.schemas import SCHEMA_NAMES, SUFFIX, schema, schema_bytes, schema_name


async def list_schemas(request: web.Request) -> web.Response:
    body = [{"name": name, "title": schema(name)["title"], "url": f"/schemas/{name}"} for name in SCHEMA_NAMES]
    return json_response({"schemas": body})


async def show_schema(request: web.Request) -> web.Response:
    """A contract's JSON Schema, byte for byte as shipped in `streams/schemas/`."""
    requested = request.match_info["name"]
    name = schema_name(requested)
    if name is None:
        error = f"no schema {requested!r}; known: {', '.join(SCHEMA_NAMES)} (the `{SUFFIX}` suffix is optional)"
        return json_response({"error": error}, 404)
    return web.Response(body=schema_bytes(name), content_type="application/schema+json")
