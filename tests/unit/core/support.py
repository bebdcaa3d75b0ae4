"""A batch processor built from the shipped definitions, and a dict standing in for the
store: shared by the tests that drive processing (core flows and segments, models)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.settings import Settings
from models.reco import DEFAULT_WEIGHTS, ItemModel
from streams.core.batch import InputRecord
from streams.core.content import EmailRenderer
from streams.core.flow_definitions import FlowBook
from streams.core.governance import GovernancePolicy
from streams.core.jobs import JobContext
from streams.core.processing import BatchProcessor
from streams.core.segments import SegmentBook
from streams.core.state import StatePolicy, UserState
from tests.factories import BASE_TS, encoded, event_doc

# Generous caps and no quiet hours: tests of governance set their own.
OPEN_GOVERNANCE = GovernancePolicy(cap_24h=100, cap_7d=100, quiet_hours=None)
CONTEXT = JobContext("Shop", "https://shop", "1 Street", "https://unsub", b"secret", 14.0)


def processor(
    templates: Path | None = None,
    renderer: EmailRenderer | None = None,
    segments: SegmentBook | None = None,
    flows_yaml: str | None = None,
    governance: GovernancePolicy = OPEN_GOVERNANCE,
    clock_ms: Callable[[], int] = lambda: BASE_TS,
    partitions: int = 1,
) -> BatchProcessor:
    """A processor with the shipped definitions, or the given ones; governance lets all through."""
    settings = Settings()
    renderer = renderer or EmailRenderer(templates or settings.templates_dir, defaults={"brand": "Shop"})
    segments = segments or SegmentBook.load(settings.segments_file)
    templates_known, segment_names = set(renderer.versions), set(segments.by_name)
    experiment_names = {"welcome_preheader", "winback_subject"}
    flows = (
        FlowBook.from_yaml(flows_yaml, "test", templates_known, experiment_names, segment_names)
        if flows_yaml is not None
        else FlowBook.load(settings.flows_file, templates_known, experiment_names, segment_names)
    )
    return BatchProcessor(
        StatePolicy(),
        renderer,
        CONTEXT,
        segments,
        max_event_bytes=4_096,
        clock_ms=clock_ms,
        reco_weights=DEFAULT_WEIGHTS,
        item_model=ItemModel.empty(),
        experiments={},
        flows=flows,
        governance=governance,
        partitions=partitions,
    )


def record(offset: int, doc: dict[str, Any] | bytes, key: bytes | None = None, partition: int = 0) -> InputRecord:
    value = doc if isinstance(doc, bytes) else encoded(doc)
    user = key if key is not None else (doc["user_id"].encode() if isinstance(doc, dict) else b"x")
    return InputRecord(partition, offset, user, value, BASE_TS)


class Store:
    """A dict standing in for RocksDB: what a batch wrote is what the next batch loads."""

    def __init__(self) -> None:
        self.states: dict[tuple[int, str], UserState] = {}

    def load(self, partition: int, user_id: str) -> UserState | None:
        return self.states.get((partition, user_id))

    def save(self, result: Any) -> None:
        for partition, states in result.changes.states.items():
            for user_id, state in states.items():
                self.states[(partition, user_id)] = state


def signup(user: str, **context: Any) -> dict[str, Any]:
    doc = event_doc("signup", user)
    doc["context"] = {"email": f"{user}@example.com", "first_name": "Ann", **context}
    return doc
