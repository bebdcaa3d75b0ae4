"""What every handler reads: the worker's services, and the JSON answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from app.settings import Settings
from app.worker_stats import LatencySamples, RecoQuality
from streams.core.clock import Clock
from streams.core.processing import BatchProcessor
from streams.core.routing import FleetView
from streams.core.segments import SegmentBook
from streams.kafka.clients import EventPublisher
from streams.kafka.lookup import UserLookup
from streams.kafka.model_feed import SnapshotFeed
from streams.kafka.ownership import PartitionOwnership
from streams.kafka.readiness import Readiness
from streams.kafka.segment_sizes import SegmentSizes
from streams.serving.prediction_cache import PredictionCache


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Everything the API reads or calls, built with the worker."""

    settings: Settings
    clock: Clock
    # Rendering, templates, experiments, and the item model the worker ranks with.
    processor: BatchProcessor
    segments: SegmentBook
    ownership: PartitionOwnership
    users: UserLookup
    segment_sizes: SegmentSizes
    snapshots: SnapshotFeed
    prediction_cache: PredictionCache
    events: EventPublisher
    latency: LatencySamples
    reco_quality: RecoQuality
    readiness: Readiness
    # Who owns which partition, read at each request: a rebalance changes it.
    fleet: Callable[[], FleetView]


TIDEMAIL = web.AppKey("tidemail", ApiServices)


def services(request: web.Request) -> ApiServices:
    return request.app[TIDEMAIL]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
