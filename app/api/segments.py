"""The defined segments, their sizes in this worker's partitions, and samples of members."""

from __future__ import annotations

from aiohttp import web

from app.api.params import whole_number
from app.api.services import json_response, services

MAX_SAMPLE = 200


async def list_segments(request: web.Request) -> web.Response:
    """Every defined segment with its size in the partitions this worker owns."""
    app = services(request)
    sizes = app.segment_sizes.totals()
    body = [
        {"name": segment.name, "description": segment.description, "size": sizes.get(segment.name, 0)}
        for segment in app.segments.segments
    ]
    return json_response({"definition_version": app.segments.version, "segments": body})


async def show_segment(request: web.Request) -> web.Response:
    app = services(request)
    name = request.match_info["name"]
    segment = app.segments.by_name.get(name)
    if segment is None:
        return json_response({"error": f"no segment {name!r}"}, 404)
    limit = whole_number(request, "limit", 20, 1, MAX_SAMPLE)
    sample = app.users.members(name, limit)
    body = {
        "name": segment.name,
        "description": segment.description,
        "definition": segment.definition["condition"],
        "definition_version": app.segments.version,
        "size": app.segment_sizes.totals().get(name, 0),
        "sample": sample,
    }
    return json_response(body)
