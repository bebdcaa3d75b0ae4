"""The per-batch core of the worker: records in, new user states, jobs and dead letters out.

Nothing here touches Kafka or RocksDB: the hot path hands in the records of one
fetch and a function that loads a user's stored state, then makes the result durable.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.content import EmailRenderer
from streams.errors import InvalidEvent, RenderError, UndeliverableJob
from streams.events import Event, parse_event
from streams.flows import advance_flows
from streams.jobs import JobContext, build_job
from streams.state import StatePolicy, UserState, apply

log = logging.getLogger(__name__)

StateLoader = Callable[[int, str], UserState | None]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed message, stripped to what processing needs."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be (fully) processed, with the reason it is parked."""

    record: InputRecord
    kind: str
    reason: str


@dataclass(slots=True)
class BatchResult:
    """What one batch changed; the hot path makes all of it durable before moving on."""

    states: dict[int, dict[str, UserState]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    job_triggers: dict[str, InputRecord] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    last_offsets: dict[int, int] = field(default_factory=dict)
    applied_by_type: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)


class BatchProcessor:
    """Applies batches of raw records to user state, once per event, in partition order."""

    def __init__(
        self,
        policy: StatePolicy,
        renderer: EmailRenderer,
        job_context: JobContext,
        max_event_bytes: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self._policy = policy
        self.renderer = renderer
        self._job_context = job_context
        self._max_event_bytes = max_event_bytes
        self._clock_ms = clock_ms

    def process(self, batch: Mapping[int, Sequence[InputRecord]], load: StateLoader) -> BatchResult:
        result = BatchResult()
        for partition, records in batch.items():
            changed = result.states.setdefault(partition, {})
            for record in records:
                self._process_record(record, changed, load, result)
            if records:
                result.last_offsets[partition] = records[-1].offset
        return result

    def _process_record(
        self, record: InputRecord, changed: dict[str, UserState], load: StateLoader, result: BatchResult
    ) -> None:
        try:
            event = parse_event(record.value, record.key, self._max_event_bytes)
        except InvalidEvent as e:
            result.dead_letters.append(DeadLetter(record, "invalid_event", str(e)))
            return
        state = changed.get(event.user_id) or load(record.partition, event.user_id) or UserState(event.user_id)
        if record.offset <= state.applied_offset:
            # Already applied before a restart; the user's state remembers how far it got.
            result.skipped["replayed"] += 1
            return
        try:
            new_state = self._transition(state, event, record, result)
        except Exception as e:  # a bug in our own logic must cost one event, not the worker
            log.exception("processing event %s of user %s failed", event.event_id, event.user_id)
            result.dead_letters.append(DeadLetter(record, "internal_error", f"{type(e).__name__}: {e}"))
            return
        new_state.applied_offset = record.offset
        changed[event.user_id] = new_state

    def _transition(self, state: UserState, event: Event, record: InputRecord, result: BatchResult) -> UserState:
        applied = apply(state, event, self._policy)
        if applied is state:
            result.skipped["duplicate"] += 1
            return state.copy()
        result.applied_by_type[event.type] += 1
        new_state, requests = advance_flows(applied, event)
        for request in requests:
            if new_state.is_unsubscribed(request.list_name):
                result.suppressed["unsubscribed"] += 1
                continue
            try:
                job = build_job(request, new_state, self.renderer, self._job_context, self._clock_ms())
            except UndeliverableJob as e:
                result.dead_letters.append(DeadLetter(record, "undeliverable", str(e)))
            except RenderError as e:
                result.dead_letters.append(DeadLetter(record, "render_failed", str(e)))
            else:
                result.jobs.append(job)
                result.job_triggers[job["job_id"]] = record
        return new_state
