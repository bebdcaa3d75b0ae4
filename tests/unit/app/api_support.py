"""The worker's real API (routes, middlewares, handlers, processor, user lookup) over
in-memory stand-ins for what it reads from RocksDB, Redis and Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.api import ApiServices, add_routes
from app.faust_app import build_processor
from app.settings import Secret, Settings
from app.worker_stats import LatencySamples, RecoQuality
from streams.consumer_lag import ConsumerLag
from streams.core.clock import Clock
from streams.core.partitioning import partition_of
from streams.core.processing import BatchProcessor
from streams.core.routing import FleetView
from streams.core.state import UserState
from streams.core.state_codec import encode_state
from streams.kafka.lookup import UserLookup
from streams.kafka.readiness import Readiness
from streams.kafka.segment_sizes import SegmentSizes

API_TOKEN = "api-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
PARTITIONS = 4
# Users of partitions 0 and 1 are this worker's; the others a second worker's, if there is one.
OWNED = frozenset({0, 1})
SELF_URL = "http://127.0.0.1:6066"

Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class MemoryStore:
    """The part of `UserStore` that `UserLookup` reads."""

    def __init__(self, states: list[UserState]) -> None:
        self._rows: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
        for state in states:
            key = state.user_id.encode()
            self._rows[self.partition_for(key)][key] = encode_state(state)

    def partition_for(self, key: bytes) -> int:
        return partition_of(key, PARTITIONS)

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._rows[partition].get(key)

    def sample_users(self, partition: int) -> list[bytes]:
        return [self._rows[partition][key] for key in sorted(self._rows[partition])]


class MemoryCache:
    """`PredictionCache` without Redis."""

    def __init__(self) -> None:
        self.fields: dict[tuple[str, str], bytes] = {}

    async def get(self, user_id: str, field: str) -> bytes | None:
        return self.fields.get((user_id, field))

    async def put(self, user_id: str, field: str, value: bytes) -> None:
        self.fields[(user_id, field)] = value

    async def entries(self, user_id: str) -> dict[str, bytes]:
        return {field: value for (user, field), value in self.fields.items() if user == user_id}


class RecordedEvents:
    """`EventPublisher` without Kafka: what the API published, by user."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, bytes]] = []

    async def submit(self, user_id: str, value: bytes) -> None:
        self.submitted.append((user_id, value))


def stored_users() -> list[UserState]:
    """A few users, owned or not, one of them in a segment."""
    users = [UserState(f"u{n}", first_seen_ms=1_000, last_seen_ms=2_000) for n in range(12)]
    for state in users:
        state.traits = {"email": f"{state.user_id}@example.com", "first_name": "Ada"}
        state.segments = {"new_visitors": 1_000}
    return users


@cache
def _clock_and_processor() -> tuple[Clock, BatchProcessor]:
    # Compiling the template library takes ~0.4 s; the processor keeps nothing between requests.
    clock = Clock()
    return clock, build_processor(Settings(partitions=PARTITIONS), clock)


def alone(owned: frozenset[int]) -> Callable[[], FleetView]:
    """A fleet of one worker owning `owned`: the other partitions have no owner yet."""
    return lambda: FleetView(SELF_URL, dict.fromkeys(owned, SELF_URL), frozenset({SELF_URL}))


def in_memory_services(
    owned: frozenset[int] = OWNED, fleet: Callable[[], FleetView] | None = None, **settings: Any
) -> ApiServices:
    defaults = {
        "api_tokens": Secret(API_TOKEN),
        "admin_tokens": Secret(ADMIN_TOKEN),
        "allow_clock_control": True,
        "partitions": PARTITIONS,
    }
    config = Settings(**(defaults | settings))
    clock, processor = _clock_and_processor()
    clock.offset_ms = 0
    ownership: Any = SimpleNamespace(owned=owned)
    store: Any = MemoryStore(stored_users())
    snapshots: Any = SimpleNamespace(status=lambda: {"snapshot_offset": processor.item_model.offset})
    cache: Any = MemoryCache()
    events: Any = RecordedEvents()
    return ApiServices(
        settings=config,
        clock=clock,
        processor=processor,
        segments=processor.segments,
        ownership=ownership,
        users=UserLookup(store, ownership),
        segment_sizes=SegmentSizes(),
        snapshots=snapshots,
        prediction_cache=cache,
        events=events,
        latency=LatencySamples(),
        reco_quality=RecoQuality(),
        readiness=Readiness(
            ownership=ownership, lag=ConsumerLag("events"), recovery_done=lambda: True, max_lag_records=1_000
        ),
        fleet=fleet or alone(owned),
    )


def serving(services: ApiServices) -> web.Application:
    web_app = web.Application()
    add_routes(web_app, services)
    return web_app


@asynccontextmanager
async def two_workers() -> AsyncIterator[tuple[tuple[Client, Client], tuple[ApiServices, ApiServices]]]:
    """Two workers' APIs on real sockets, the first owning OWNED and the second the other
    partitions, each knowing the other's URL."""
    urls: list[str] = []

    def fleet(me: int) -> Callable[[], FleetView]:
        def view() -> FleetView:
            owners = {p: urls[0 if p in OWNED else 1] for p in range(PARTITIONS)}
            return FleetView(urls[me], owners, frozenset(urls))

        return view

    first = in_memory_services(OWNED, fleet(0))
    second = in_memory_services(frozenset(range(PARTITIONS)) - OWNED, fleet(1))
    async with TestClient(TestServer(serving(first))) as a, TestClient(TestServer(serving(second))) as b:
        urls.extend(str(client.make_url("")).rstrip("/") for client in (a, b))
        yield (a, b), (first, second)
