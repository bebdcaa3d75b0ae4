"""The defined segments, their sizes over the fleet's partitions, and samples of members."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.api.forwarding import ask_fleet
from app.api.params import choice, whole_number
from app.api.services import json_response, services
from streams.core.routing import FleetSizes, fleet_sizes

MAX_SAMPLE = 200
# `fleet`: every worker is asked for its partitions' sizes; `worker`: this worker's partitions only.
SCOPES = ("fleet", "worker")


async def list_segments(request: web.Request) -> web.Response:
    """Every defined segment with its size over the fleet, and which workers' partitions it counts."""
    app = services(request)
    sizes, coverage = await _sizes(request)
    body = [
        {"name": segment.name, "description": segment.description, "size": sizes.totals.get(segment.name, 0)}
        for segment in app.segments.segments
    ]
    return json_response({"definition_version": app.segments.version, "segments": body, **coverage})


async def show_segment(request: web.Request) -> web.Response:
    """A segment's definition, its size over the fleet, and a sample of members from this worker's partitions."""
    app = services(request)
    name = request.match_info["name"]
    segment = app.segments.by_name.get(name)
    if segment is None:
        return json_response({"error": f"no segment {name!r}"}, 404)
    limit = whole_number(request, "limit", 20, 1, MAX_SAMPLE)
    sizes, coverage = await _sizes(request)
    body = {
        "name": segment.name,
        "description": segment.description,
        "definition": segment.definition["condition"],
        "definition_version": app.segments.version,
        "size": sizes.totals.get(name, 0),
        "sample": app.users.members(name, limit),
        **coverage,
    }
    return json_response(body)


async def _sizes(request: web.Request) -> tuple[FleetSizes, dict[str, Any]]:
    """Sizes over the partitions of every worker that answered (this one only with
    `?scope=worker`), and which workers and partitions they cover."""
    app = services(request)
    scope = choice(request, "scope", SCOPES)
    fleet = app.fleet()
    reports: dict[str, dict[int, dict[str, int]] | None] = {fleet.self_url: app.segment_sizes.by_partition()}
    if scope == "fleet":
        for url, answer in (await ask_fleet(request, "/segments?scope=worker")).items():
            reports[url] = _reported_sizes(answer)
    answered = {url: report for url, report in reports.items() if report is not None}
    sizes = fleet_sizes(answered, fleet.owners, app.settings.partitions)
    coverage = {
        "scope": scope,
        "workers": [
            {"url": url, "answered": report is not None, "partitions": sorted(report or ())}
            for url, report in reports.items()
        ],
        "partitions_missing": sizes.missing,
        "complete": not sizes.missing,
        "sizes_by_partition": {str(p): counts for p, counts in sizes.by_partition.items()},
    }
    return sizes, coverage


def _reported_sizes(answer: Any) -> dict[int, dict[str, int]] | None:
    """Another worker's `sizes_by_partition`, or None if it gave none fit to add up."""
    reported = answer.get("sizes_by_partition") if isinstance(answer, dict) else None
    if not isinstance(reported, dict):
        return None
    sizes: dict[int, dict[str, int]] = {}
    for partition, counts in reported.items():
        if not (partition.isdigit() and isinstance(counts, dict)):
            return None
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts.values()):
            return None
        sizes[int(partition)] = counts
    return sizes
