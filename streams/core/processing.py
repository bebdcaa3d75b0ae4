"""The per-batch core of the worker: records in, new user states, jobs and dead letters out.

Nothing here touches Kafka or RocksDB: the hot path hands in the records of one
fetch and a function that loads a user's stored state, then makes the result durable.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from models import propensity
from models.bandits import HOLDOUT, REWARD_EVENTS, BanditRecord, Experiment, posteriors_of
from models.popularity import Product
from models.reco import Interaction, ItemModel, recommend, remember
from models.send_time import add_engagement, best_send_time, hour_of_week
from streams.core import learning
from streams.core.batch import BatchResult, DeadLetter, InputRecord
from streams.core.content import EmailRenderer, RenderedEmail
from streams.core.errors import InvalidEvent, RenderError
from streams.core.events import Event, parse_event
from streams.core.flow_definitions import FlowBook
from streams.core.flow_engine import FlowEngine, JobRequest, job_id
from streams.core.governance import GovernancePolicy, decide, record_send
from streams.core.jobs import JobContext, build_job, email_context, signed_unsubscribe_url
from streams.core.learning import interactions_of, owned_skus
from streams.core.segments import Evaluation, SegmentBook, Transitions
from streams.core.state import DEFAULT_LIST, ExperimentSend, StatePolicy, UserState, apply

log = logging.getLogger(__name__)

StateLoader = Callable[[int, str], UserState | None]
MAX_CLOCK_HOPS = 16
# Recommender quality is measured on these, as hit-rate at 10 of the product acted on.
PREDICTED_EVENTS = frozenset({"click", "purchase"})
ENGAGEMENT_EVENTS = frozenset({"email_open", "email_click"})
EXPERIMENT_JOBS_KEPT = 5
# A purchase rewards the user's latest experiment email if it came at most this long before.
PURCHASE_ATTRIBUTION_MS = 7 * 86_400_000
QUALITY_K = 10
# One in this many clicks and purchases is predicted: ranking costs ~40 us, and a fixed
# sample (by event id, so replays agree) measures the same hit-rate at a sixteenth the cost.
QUALITY_SAMPLE = 16


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
    ) -> None:
        self._policy = policy
        self.flows = FlowEngine(flows, self._scores_of)
        self._governance = governance
        self._renderer = renderer
        self.segments = segments
        self._job_context = job_context
        self._max_event_bytes = max_event_bytes
        self._clock_ms = clock_ms
        self._reco_weights = reco_weights
        self.experiments = experiments
        # The trainer's latest snapshot; the hot path swaps in each new one between batches.
        self.item_model = item_model

    @property
    def template_versions(self) -> dict[str, str]:
        return self._renderer.versions

    def preview(self, template: str, state: UserState) -> RenderedEmail:
        """Render `template` for `state` as a job would be rendered now, without emitting anything."""
        now_ms = self._clock_ms()
        unsubscribe_url = signed_unsubscribe_url(state.user_id, DEFAULT_LIST, self._job_context, now_ms)
        context = email_context(state, self._job_context, self.item_model, unsubscribe_url, now_ms)
        return self._renderer.render(template, context)

    def process(self, batch: Mapping[int, Sequence[InputRecord]], load: StateLoader) -> BatchResult:
        result = BatchResult()
        for partition, records in batch.items():
            self._process_partition(partition, records, load, result)
        result.changes.segment_moves = count_moves(result.outputs.segment_transitions)
        return result

    def _process_partition(
        self, partition: int, records: Sequence[InputRecord], load: StateLoader, result: BatchResult
    ) -> None:
        changed = result.changes.states.setdefault(partition, {})
        for record in records:
            self._process_record(record, changed, load, result)
        if records:
            result.changes.last_offsets[partition] = records[-1].offset
        for user_id, state in changed.items():
            self._index_next_check(partition, user_id, state, result)

    def on_clock(self, due: Mapping[int, Sequence[tuple[int, str]]], load: StateLoader) -> BatchResult:
        """Handle due timer index entries `(due_ms, user_id)` per partition: segment checks,
        flow waits and propensity probes whose instant has come."""
        result = BatchResult()
        now_ms = self._clock_ms()
        for partition, entries in due.items():
            self._fire_partition(partition, entries, now_ms, load, result)
        result.changes.segment_moves = count_moves(result.outputs.segment_transitions)
        return result

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
            state = changed.get(user_id) or load(partition, user_id)
            if state is None:
                continue
            state = state.copy()
            if state.indexed_due_ms == due_ms:
                # Later entries may remain; which is earliest is no longer known.
                state.indexed_due_ms = None
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
        requests: list[JobRequest] = []
        due = [t for t in (state.next_check_ms, self.flows.next_due(state)) if t is not None and t <= now_ms]
        if due:
            result.counts.timer_lateness_ms = max(result.counts.timer_lateness_ms, now_ms - min(due))
        if state.next_check_ms is not None and state.next_check_ms <= now_ms:
            state = self._catch_up(state, now_ms, timer.partition, result, requests)
        requests += self.flows.fire_due(state, now_ms, result.counts.flow_transitions)
        self._close_due_probe(state, now_ms, result)
        for request in requests:
            self._emit(request, state, timer, result)
        return state

    @staticmethod
    def _close_due_probe(state: UserState, now_ms: int, result: BatchResult) -> None:
        # The 7 days are over: the probe's outcomes are final, and it becomes an example.
        probe = state.propensity_probe
        if propensity.is_due(probe, now_ms):
            assert probe is not None
            result.training.propensity_examples.append((propensity.probe_features(probe), probe.y))
            state.propensity_probe = None

    def _index_next_check(self, partition: int, user_id: str, state: UserState, result: BatchResult) -> None:
        # The index is lazy: an entry is added only when the next check moves earlier than
        # the user's earliest entry. A later next check is left to the existing entry, which
        # fires, finds nothing due and re-indexes. Most events push the next check later
        # (recency windows restart), so most batches write no index entries at all.
        instants = (state.next_check_ms, propensity.due_ms(state.propensity_probe), self.flows.next_due(state))
        due = min((t for t in instants if t is not None), default=None)
        if due is not None and (state.indexed_due_ms is None or due < state.indexed_due_ms):
            state.indexed_due_ms = due
            result.changes.timer_additions.setdefault(partition, []).append((due, user_id))

    def _catch_up(
        self, state: UserState, now_ms: int, partition: int, result: BatchResult, requests: list[JobRequest]
    ) -> UserState:
        # Evaluate at each due instant in turn, so every flip happens at the moment it is due
        # even when the worker was down for a while; a long backlog continues next tick.
        current = state
        for _ in range(MAX_CLOCK_HOPS):
            due = current.next_check_ms
            if due is None or due > now_ms:
                break
            evaluation = self.segments.on_clock(current, due)
            current = self._with_evaluation(current, evaluation, partition, result)
            entered = self.flows.triggers_among(evaluation.transitions)
            if entered:
                requests += self.flows.on_entered(current, entered, due, "clock", result.counts.flow_transitions)
        return current

    def _with_evaluation(
        self, state: UserState, evaluation: Evaluation, partition: int, result: BatchResult
    ) -> UserState:
        state.segments = evaluation.segments
        state.next_check_ms = evaluation.next_check_ms
        if evaluation.transitions is not None:
            result.outputs.segment_transitions.append((partition, evaluation.transitions))
        return state

    def _learn_interactions(
        self,
        before: UserState,
        event: Event,
        interactions: list[tuple[Interaction, Product | None]],
        result: BatchResult,
    ) -> list[Any]:
        """The user's new interaction history; a sample of clicks and purchases is predicted first."""
        if event.type in PREDICTED_EVENTS and zlib.crc32(event.event_id.encode()) % QUALITY_SAMPLE == 0:
            owned = owned_skus(before)
            picks = {r.sku for r in recommend(before.recent_interactions, self.item_model, QUALITY_K, owned)}
            popular = [sku for sku in self.item_model.popular[: QUALITY_K + len(owned)] if sku not in owned]
            for interaction, _ in interactions:
                if interaction.sku not in owned:
                    result.counts.reco_quality["predictions"] += 1
                    result.counts.reco_quality["model"] += interaction.sku in picks
                    result.counts.reco_quality["popular"] += interaction.sku in popular[:QUALITY_K]
        history = before.recent_interactions
        for interaction, product in interactions:
            history = remember(history, interaction)
            result.training.interactions.append((interaction, product))
        return history

    def _process_record(
        self, record: InputRecord, changed: dict[str, UserState], load: StateLoader, result: BatchResult
    ) -> None:
        try:
            event = parse_event(record.value, record.key, self._max_event_bytes)
        except InvalidEvent as e:
            result.outputs.dead_letters.append(DeadLetter(record, "invalid_event", str(e)))
            return
        state = changed.get(event.user_id) or load(record.partition, event.user_id) or UserState(event.user_id)
        if record.offset <= state.applied_offset:
            # Already applied before a restart; the user's state remembers how far it got.
            result.counts.skipped["replayed"] += 1
            return
        try:
            new_state = self._transition(state, event, record, result)
        except Exception as e:  # a bug in our own logic must cost one event, not the worker
            log.exception("processing event %s of user %s failed", event.event_id, event.user_id)
            result.outputs.dead_letters.append(DeadLetter(record, "internal_error", f"{type(e).__name__}: {e}"))
            return
        new_state.applied_offset = record.offset
        changed[event.user_id] = new_state

    def _transition(self, state: UserState, event: Event, record: InputRecord, result: BatchResult) -> UserState:
        applied = apply(state, event, self._policy)
        if applied is state:
            result.counts.skipped["duplicate"] += 1
            return state.copy()
        result.counts.applied_by_type[event.type] += 1
        interactions = interactions_of(event, self._reco_weights)
        if interactions:
            applied.recent_interactions = self._learn_interactions(state, event, interactions, result)
        if event.type in ENGAGEMENT_EVENTS:
            hour = hour_of_week(event.timestamp_ms, applied.traits.get("timezone"))
            applied.engagement_hours = add_engagement(applied.engagement_hours, hour)
            result.training.engagement_hours.append(hour)
        if event.type in REWARD_EVENTS and applied.experiment_jobs:
            applied.experiment_jobs = _attribute_reward(applied.experiment_jobs, event, result)
        applied.propensity_probe = propensity.observe(state.propensity_probe, event.type, event.timestamp_ms)
        self._close_due_probe(applied, event.timestamp_ms, result)
        if applied.propensity_probe is None:
            applied.propensity_probe = learning.open_probe(applied, event.timestamp_ms)
        applied.windows, touched = self.segments.accumulate(applied.windows, event)
        # Segments are evaluated in event time (the user's latest event), so a replay
        # reaches the same memberships; the clock catches up with anything due since.
        # Evaluated after every event, not once per batch: a replay after a crash groups
        # events into other batches, and must still publish the same transitions.
        changed_inputs = self.segments.inputs_changed_by(state, applied, event, touched)
        evaluation = self.segments.after_events(applied, changed_inputs, applied.last_seen_ms, event.event_id)
        applied = self._with_evaluation(applied, evaluation, record.partition, result)
        flows = self.flows
        entered = flows.triggers_among(evaluation.transitions)
        if applied.flow_runs or event.type in flows.book.by_trigger_event or entered:
            # Waits that ended before this event run out first; their steps see the state after it.
            requests = flows.fire_due(applied, event.timestamp_ms - 1, result.counts.flow_transitions)
            requests += flows.on_event(applied, event, entered, result.counts.flow_transitions)
            for request in requests:
                self._emit(request, applied, record, result)
        return applied

    def _emit(self, request: JobRequest, state: UserState, trigger: InputRecord, result: BatchResult) -> None:
        """Govern, assign a variant, render and queue one job; count whatever stops it."""
        decision = decide(state, request, self._governance, lambda: self._best_hour(state))
        if not decision.allowed:
            result.counts.governance[decision.outcome] += 1
            if decision.outcome == "no_address":
                # Missing user data, unlike an opt-out: someone should look at it.
                reason = (
                    f"cannot send {request.flow!r} step {request.step}: user {state.user_id!r} has no email address"
                )
                result.outputs.dead_letters.append(DeadLetter(trigger, "undeliverable", reason))
            return
        the_job_id = job_id(request.flow, request.step, state.user_id, request.trigger_key)
        experiment = self.experiments.get(request.experiment) if request.experiment else None
        variant = self._assign_variant(experiment, request, state, the_job_id, result) if experiment else None
        if variant == HOLDOUT:
            result.counts.governance["held_out"] += 1
            return
        result.counts.governance["allowed"] += 1
        if decision.delayed:
            result.counts.governance["delayed_quiet_hours"] += 1
        try:
            job = build_job(
                request,
                the_job_id,
                state,
                self._renderer,
                self._job_context,
                self.item_model,
                self._clock_ms(),
                decision.send_at_ms,
                experiment.name if experiment else None,
                variant,
            )
        except RenderError as e:
            result.outputs.dead_letters.append(DeadLetter(trigger, "render_failed", str(e)))
            return
        record_send(state, request, decision)
        result.outputs.jobs.append(job)
        result.outputs.job_triggers[job["job_id"]] = trigger

    def _assign_variant(
        self, experiment: Experiment, request: JobRequest, state: UserState, the_job_id: str, result: BatchResult
    ) -> str:
        posteriors = posteriors_of(self.item_model.bandits, experiment.name)
        held_out = experiment.is_held_out(state.user_id)
        variant = HOLDOUT if held_out else experiment.assign(state.user_id, the_job_id, posteriors)
        # Held-out users get nothing, but their purchases still count, as the baseline.
        sent = ExperimentSend(the_job_id, experiment.name, variant, request.at_ms, False)
        state.experiment_jobs = [*state.experiment_jobs[-(EXPERIMENT_JOBS_KEPT - 1) :], sent]
        result.training.bandit_records.append(BanditRecord("sent", experiment.name, variant, None, False))
        return variant

    def _best_hour(self, state: UserState) -> int | None:
        best = best_send_time(state.engagement_hours, self.item_model.send_hours)
        return best.hour_of_week % 24 if best is not None else None

    def _scores_of(self, state: UserState, at_ms: int) -> dict[str, float]:
        x = learning.features(state, at_ms)
        return {f"{target}_7d": scorer.probability(x) for target, scorer in self.item_model.propensity.items()}


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


def _attribute_reward(jobs: list[ExperimentSend], event: Event, result: BatchResult) -> list[ExperimentSend]:
    """Credit an open or click to the job it names, a purchase to the latest recent job."""
    if event.type == "purchase":
        recent = [j for j in jobs if 0 <= event.timestamp_ms - j.sent_ms <= PURCHASE_ATTRIBUTION_MS]
        target = recent[-1].job_id if recent else None
    else:
        target = event.properties.get("job_id")
    updated = []
    for job in jobs:
        if job.job_id == target:
            reward = BanditRecord("reward", job.experiment, job.variant, event.type, not job.rewarded)
            result.training.bandit_records.append(reward)
            job = job._replace(rewarded=True)
        updated.append(job)
    return updated
