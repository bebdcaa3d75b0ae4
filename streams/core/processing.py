"""The per-batch core of the worker: records in, new user states, jobs and dead letters out.

Nothing here touches Kafka or RocksDB: the worker hands in the records of one fetch (or
the timer entries now due) and a function that loads a user's stored state, then makes
the result durable. Each event and each due timer goes through named steps, in order
(`event_steps`, `clock_steps`, `emission`); this module runs them and folds their outputs
into the batch's `BatchResult`.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence

import orjson

from models.bandits import REWARD_EVENTS, Experiment
from models.reco import ItemModel
from streams.core.batch import BatchResult, DeadLetter, InputRecord, Reroute, Withdrawal
from streams.core.clock_steps import (
    catch_up_segments,
    index_next_check,
    lateness,
    run_due_waits,
    take_timer,
)
from streams.core.content import EmailRenderer, RenderedEmail
from streams.core.emission import Emission, JobEmitter
from streams.core.erasure import ERASE, drop_markers, erase_user, is_erased, is_marker
from streams.core.errors import InvalidEvent
from streams.core.event_steps import (
    ENGAGEMENT_EVENTS,
    QualitySample,
    advance_probe,
    attribute_rewards,
    close_due_probe,
    evaluate_segments,
    learn_interactions,
    note_engagement,
    run_flows,
)
from streams.core.events import Event, parse_event
from streams.core.flow_definitions import FlowBook
from streams.core.flow_engine import FlowEngine, FlowOutputs
from streams.core.governance import GovernancePolicy
from streams.core.jobs import JobContext
from streams.core.learning import propensity_scores
from streams.core.partitioning import REROUTED_FROM_HEADER, Partitioner
from streams.core.segments import SegmentBook, Transitions
from streams.core.state import StatePolicy, UserState, apply
from streams.core.withdrawal import lists_left

log = logging.getLogger(__name__)

StateLoader = Callable[[int, str], UserState | None]


class BatchProcessor:
    """Applies batches of raw records to user state, once per event, in partition order."""

    def __init__(
        self,
        policy: StatePolicy,
        renderer: EmailRenderer,
        job_context: JobContext,
        segments: SegmentBook,
        max_event_bytes: int,
        clock_ms: Callable[[], int],
        reco_weights: dict[str, float],
        item_model: ItemModel,
        experiments: dict[str, Experiment],
        flows: FlowBook,
        governance: GovernancePolicy,
        partitions: int = 1,
    ) -> None:
        self._policy = policy
        # With one partition every user lives in it: nothing to check.
        self._partition_of = Partitioner(partitions) if partitions > 1 else None
        self._flow_engine = FlowEngine(flows, self._scores_of, clock_ms, governance.max_trigger_age_ms)
        self._emitter = JobEmitter(renderer, job_context, governance, clock_ms)
        self.segments = segments
        self._max_event_bytes = max_event_bytes
        self._clock_ms = clock_ms
        self._reco_weights = reco_weights
        self.experiments = experiments
        # The trainer's latest snapshot; the worker swaps in each new one between batches.
        self.item_model = item_model

    @property
    def template_versions(self) -> dict[str, str]:
        return self._emitter.template_versions

    def preview(self, template: str, state: UserState) -> RenderedEmail:
        """Render `template` for `state` as a job would be rendered now, without emitting anything."""
        return self._emitter.preview(template, state, self.item_model)

    def process(self, batch: Mapping[int, Sequence[InputRecord]], load: StateLoader) -> BatchResult:
        result = BatchResult()
        for _ in self.process_in_slices(batch, load, result, slice_records=sys.maxsize):
            pass
        return result

    def process_in_slices(
        self, batch: Mapping[int, Sequence[InputRecord]], load: StateLoader, result: BatchResult, slice_records: int
    ) -> Iterator[int]:
        """`process` into `result`, yielding how many records it processed after each slice of
        at most `slice_records` of a partition's records, so that a caller can let other work
        run in between; `result` is whole once the iterator is exhausted, as `process`'s would be."""
        for partition, records in batch.items():
            changed = result.changes.states.setdefault(partition, {})
            for start in range(0, len(records), slice_records):
                chunk = records[start : start + slice_records]
                for record in chunk:
                    self._process_record(record, changed, load, result)
                yield len(chunk)
            self._close_partition(partition, records, changed, result)
        result.changes.segment_moves = count_moves(result.outputs.segment_transitions)

    def _close_partition(
        self, partition: int, records: Sequence[InputRecord], changed: dict[str, UserState], result: BatchResult
    ) -> None:
        if records:
            result.changes.last_offsets[partition] = records[-1].offset
        if partition in result.changes.erasures:
            drop_markers(changed, result.changes.erasures[partition])
        for user_id, state in changed.items():
            self._index_next_check(partition, user_id, state, result)

    def _process_record(
        self, record: InputRecord, changed: dict[str, UserState], load: StateLoader, result: BatchResult
    ) -> None:
        try:
            event = parse_event(record.value, record.key, self._max_event_bytes)
        except InvalidEvent as e:
            result.outputs.dead_letters.append(DeadLetter(record, "invalid_event", str(e)))
            return
        if self._partition_of is not None and (home := self._partition_of(event.user_id)) != record.partition:
            _reroute(record, event.user_id, home, result)
            return
        state = changed.get(event.user_id) or load(record.partition, event.user_id) or UserState(event.user_id)
        if record.offset <= state.applied_offset:
            # Already applied before a restart; the user's state remembers how far it got.
            result.counts.skipped["replayed"] += 1
            return
        if event.type == ERASE:
            changed[event.user_id] = erase_user(state, event, record, self._clock_ms(), self.segments.version, result)
            return
        if is_erased(state, event):
            # The erased person's own event, replayed or late: it must not bring them back.
            result.counts.skipped["erased"] += 1
            return
        try:
            new_state = self._on_event(state, event, record, result)
        except Exception as e:  # a bug in our own logic must cost one event, not the worker
            log.exception("processing event %s of user %s failed", event.event_id, event.user_id)
            result.outputs.dead_letters.append(DeadLetter(record, "internal_error", f"{type(e).__name__}: {e}"))
            return
        new_state.applied_offset = record.offset
        changed[event.user_id] = new_state

    def _on_event(self, before: UserState, event: Event, record: InputRecord, result: BatchResult) -> UserState:
        """The event's steps in order, each one's outputs folded into the batch's result."""
        state = apply(before, event, self._policy)
        if state is before:
            result.counts.skipped["duplicate"] += 1
            return before.copy()
        result.counts.applied_by_type[event.type] += 1
        if event.type == "unsubscribe":
            for list_name in lists_left(before, state):
                left = Withdrawal(record, event.user_id, list_name, event.event_id, self._clock_ms())
                result.outputs.withdrawals.append(left)
        training = result.training
        state, learned = learn_interactions(before, state, event, self._reco_weights, self.item_model)
        if learned is not None:
            training.interactions += learned.interactions
            if learned.quality is not None:
                _count_quality(learned.quality, result)
        if event.type in ENGAGEMENT_EVENTS:
            state, hour = note_engagement(state, event)
            training.engagement_hours.append(hour)
        if event.type in REWARD_EVENTS and state.experiment_jobs:
            state, rewards = attribute_rewards(state, event)
            training.bandit_records += rewards
        state, example = advance_probe(before, state, event)
        if example is not None:
            training.propensity_examples.append(example)
        state, moved = evaluate_segments(self.segments, before, state, event)
        if moved is not None:
            result.outputs.segment_transitions.append((record.partition, moved))
        state, flows = run_flows(self._flow_engine, state, event, moved)
        if flows is not None:
            state = self._emit(flows, state, record, result)
        return state

    def on_clock(self, due: Mapping[int, Sequence[tuple[int, str]]], load: StateLoader) -> BatchResult:
        """Handle due timer index entries `(due_ms, user_id)` per partition: segment checks,
        flow waits and propensity probes whose instant has come."""
        result = BatchResult()
        for _ in self.on_clock_in_slices(due, load, result, slice_users=sys.maxsize):
            pass
        return result

    def on_clock_in_slices(
        self, due: Mapping[int, Sequence[tuple[int, str]]], load: StateLoader, result: BatchResult, slice_users: int
    ) -> Iterator[int]:
        """`on_clock` into `result`, yielding how many entries it fired after each slice of at
        most `slice_users` of a partition's entries, so that a caller can let other work run
        in between; `result` is whole once the iterator is exhausted, as `on_clock`'s would be."""
        now_ms = self._clock_ms()
        for partition, entries in due.items():
            for start in range(0, len(entries), slice_users):
                chunk = entries[start : start + slice_users]
                self._fire_partition(partition, chunk, now_ms, load, result)
                yield len(chunk)
        result.changes.segment_moves = count_moves(result.outputs.segment_transitions)

    def _fire_partition(
        self,
        partition: int,
        due: Sequence[tuple[int, str]],
        now_ms: int,
        load: StateLoader,
        result: BatchResult,
    ) -> None:
        changed = result.changes.states.setdefault(partition, {})
        removals = result.changes.timer_removals.setdefault(partition, [])
        for due_ms, user_id in due:
            removals.append((due_ms, user_id))
            stored = changed.get(user_id) or load(partition, user_id)
            if stored is None or is_marker(stored):
                continue
            state = take_timer(stored, due_ms)
            timer = InputRecord(partition, -1, user_id.encode(), orjson.dumps({"timer_due": due_ms}), now_ms)
            try:
                state = self._on_time(state, now_ms, timer, result)
            except Exception as e:  # as on the event path: one user's timer, not the worker
                log.exception("timer of user %s failed", user_id)
                result.outputs.dead_letters.append(DeadLetter(timer, "internal_error", f"{type(e).__name__}: {e}"))
                continue
            changed[user_id] = state
            self._index_next_check(partition, user_id, state, result)

    def _on_time(self, state: UserState, now_ms: int, timer: InputRecord, result: BatchResult) -> UserState:
        """A due timer's steps in order, each one's outputs folded into the batch's result."""
        late = lateness(self._flow_engine, state, now_ms)
        if late is not None:
            result.counts.timer_lateness_ms = max(result.counts.timer_lateness_ms, late)
        state, caught_up = catch_up_segments(self.segments, self._flow_engine, state, now_ms)
        if caught_up is not None:
            for moved in caught_up.transitions:
                result.outputs.segment_transitions.append((timer.partition, moved))
        state, waits = run_due_waits(self._flow_engine, state, now_ms)
        state, example = close_due_probe(state, now_ms)
        if example is not None:
            result.training.propensity_examples.append(example)
        if caught_up is not None and caught_up.flows is not None:
            state = self._emit(caught_up.flows, state, timer, result)
        if waits is not None:
            state = self._emit(waits, state, timer, result)
        return state

    def _emit(self, flows: FlowOutputs, state: UserState, trigger: InputRecord, result: BatchResult) -> UserState:
        """Count the flow runs' transitions, then emit each email they asked for, in order."""
        tally = result.counts.flow_transitions
        for transition, runs in flows.transitions:
            tally[transition] += runs
        if flows.stale_triggers:
            result.counts.governance["stale_trigger"] += flows.stale_triggers
        for request in flows.requests:
            state, emission = self._emitter.emit(request, state, self.item_model, self.experiments)
            _fold_emission(emission, trigger, result)
        return state

    def _index_next_check(self, partition: int, user_id: str, state: UserState, result: BatchResult) -> None:
        state, due = index_next_check(self._flow_engine, state)
        if due is not None:
            result.changes.timer_additions.setdefault(partition, []).append((due, user_id))

    def _scores_of(self, state: UserState, at_ms: int) -> dict[str, float]:
        return propensity_scores(self.item_model, state, at_ms)


def _count_quality(sample: QualitySample, result: BatchResult) -> None:
    quality = result.counts.reco_quality
    quality["predictions"] += sample.predictions
    quality["model"] += sample.model_hits
    quality["popular"] += sample.popular_hits
    quality["new_predictions"] += sample.new_predictions
    quality["new_model"] += sample.new_model_hits
    quality["new_popular"] += sample.new_popular_hits
    quality["new_item_to_item"] += sample.new_item_to_item_hits


def _fold_emission(emission: Emission, trigger: InputRecord, result: BatchResult) -> None:
    governance = result.counts.governance
    governance[emission.outcome] += 1
    if emission.delayed:
        governance["delayed_quiet_hours"] += 1
    if emission.at_best_hour:
        governance["scheduled_best_hour"] += 1
    if emission.sent is not None:
        result.training.bandit_records.append(emission.sent)
    if emission.dead_letter is not None:
        kind, reason = emission.dead_letter
        result.outputs.dead_letters.append(DeadLetter(trigger, kind, reason))
    if emission.job is not None:
        result.outputs.jobs.append(emission.job)
        result.outputs.job_triggers[emission.job["job_id"]] = trigger


def count_moves(transitions: list[tuple[int, Transitions]]) -> dict[tuple[int, str], Counter[str]]:
    """Entries and exits per (partition, "entered" | "exited") and segment."""
    # Gathered per partition and counted once per batch: `Counter.update` has a large
    # fixed cost, and most evaluations move only a few names.
    names: dict[tuple[int, str], list[str]] = {}
    for partition, moved in transitions:
        for change, segments in moved.by_change():
            if segments:
                names.setdefault((partition, change), []).extend(segments)
    return {move: Counter(found) for move, found in names.items()}


def _reroute(record: InputRecord, user_id: str, home: int, result: BatchResult) -> None:
    """Forward an event produced to the wrong partition (a librdkafka client's CRC32 partitioner,
    say) to its user's, where its state lives; once only, so a mismatch cannot loop."""
    if any(name == REROUTED_FROM_HEADER for name, _ in record.headers):
        reason = (
            f"event of user {user_id!r} was forwarded to partition {record.partition} but belongs in {home}; "
            "do the events topic's partition counts agree?"
        )
        result.outputs.dead_letters.append(DeadLetter(record, "misrouted", reason))
        return
    result.outputs.reroutes.append(Reroute(record, user_id, home))
