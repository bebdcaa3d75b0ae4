"""Running flows for one user: which runs an event or an instant starts, advances or ends,
and the emails their send steps ask for.

A run lives in the user's state (`UserState.flow_runs`) as a small dict:
`{"flow", "key", "run", "step", "due", "cause"}`: the flow's name, the key that tells
its runs apart (the user, or a cart id), the run id that every job of the run derives
its id from, the step it waits at, the instant that wait ends, and the event that
started it. Runs advance in event time: an event first lets every wait that ended
before it run out, so a replay walks the same steps, and the timer index fires the
rest when the clock passes their `due`.

A trigger older than the maximum trigger age on the worker's clock is stale (a backfill,
a replay, a worker days behind): it starts no run, and an awaited event that is stale
ends the run waiting for it instead of moving it on, since the event did happen (so the
timeout path is wrong) but sending now in reply to it is what the limit forbids. A stale
event still ends the runs whose goal it is and restarts a wait for quiet: both only
withhold email. Waits of runs under way run out on the timer whatever their age.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from streams.core.conditions import EvalContext
from streams.core.events import Event
from streams.core.flow_definitions import END, Flow, FlowBook, Send, Split, Wait, WaitFor
from streams.core.segments import Transitions
from streams.core.state import UserState

# Fixed so that job ids are the same on every machine and in every release.
JOB_ID_NAMESPACE: Final = uuid.UUID("5b0c3f9e-6a8e-4d59-9a43-2f4a3c1f7e10")
FLOW_KEYS_KEPT = 20
# Runs of one flow a user may have under way (one per order, say); entering one more ends
# the oldest, so a user's state stays bounded whatever the definitions.
MAX_RUNS_PER_FLOW = 10
# Load refuses loops without a wait; this only bounds a definition change mid-run.
MAX_STEPS_PER_INSTANT = 64

ScoresOf = Callable[[UserState, int], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class JobRequest:
    """An email that a flow's send step asks for; governance and rendering come after."""

    flow: str
    step: int
    template: str
    trigger_key: str
    trigger_event_id: str
    at_ms: int
    list_name: str = "marketing"
    category: str = "marketing"
    experiment: str | None = None
    # Send at the user's predicted best local hour within this long of `at_ms` (`at: best_hour`).
    best_hour_within_ms: int | None = None


@dataclass(slots=True)
class FlowOutputs:
    """What running a user's flows asked for: emails, in order, and the runs' transitions
    (`flow:what`: entered, goal, completed, superseded, ...) with how many runs each moved."""

    requests: list[JobRequest] = field(default_factory=list)
    transitions: list[tuple[str, int]] = field(default_factory=list)
    # Runs that stale triggers did not start or move on: a governance decision, `stale_trigger`.
    stale_triggers: int = 0

    def count(self, transition: str, runs: int = 1) -> None:
        self.transitions.append((transition, runs))


def job_id(flow: str, step: int, user_id: str, trigger_key: str) -> str:
    """The same trigger always yields the same id, so replays are recognisable downstream."""
    return str(uuid.uuid5(JOB_ID_NAMESPACE, f"{flow}\x1f{step}\x1f{user_id}\x1f{trigger_key}"))


class FlowEngine:
    """Applies a `FlowBook` to one user at a time. Methods replace (never mutate) the
    containers of the state they are given, which the caller owns, and add what the runs
    ask for to the caller's `FlowOutputs`."""

    def __init__(
        self,
        book: FlowBook,
        scores_of: ScoresOf,
        clock_ms: Callable[[], int] | None = None,
        max_trigger_age_ms: int | None = None,
    ) -> None:
        self.book = book
        self._scores_of = scores_of
        self._clock_ms = clock_ms
        self._max_trigger_age_ms = max_trigger_age_ms

    def is_stale(self, at_ms: int) -> bool:
        """Whether a trigger at `at_ms` is older than the maximum trigger age, on the clock."""
        if self._clock_ms is None or self._max_trigger_age_ms is None:
            return False
        return self._clock_ms() - at_ms > self._max_trigger_age_ms

    def next_due(self, state: UserState) -> int | None:
        if not state.flow_runs:
            return None
        return min((run["due"] for run in state.flow_runs if run["due"] is not None), default=None)

    def fire_due(self, state: UserState, until_ms: int, out: FlowOutputs) -> None:
        """Let every wait that ends at or before `until_ms` run out, each at its own instant."""
        while True:
            due = [r for r in state.flow_runs if r["due"] is not None and r["due"] <= until_ms]
            if not due:
                return
            run = min(due, key=lambda r: (r["due"], r["flow"], r["key"]))
            flow = self.book.flows.get(run["flow"])
            others = [r for r in state.flow_runs if r is not run]
            state.flow_runs = others
            step = flow.steps[run["step"]] if flow is not None and run["step"] < len(flow.steps) else None
            if flow is None or not isinstance(step, Wait | WaitFor):
                # The flow was removed or reshaped under the run: it ends rather than guess.
                out.count(f"{run['flow']}:retired")
                continue
            target = step.on_timeout if isinstance(step, WaitFor) else step.next
            self._continue(flow, {**run, "due": None}, target, state, run["due"], out)

    def on_event(self, state: UserState, event: Event, entered_segments: Sequence[str], out: FlowOutputs) -> None:
        """Goals end runs, awaited events move them on, triggers start new ones."""
        if state.flow_runs and event.type in self.book.run_events:
            self._apply_to_runs(state, event, out)
        for flow in self.book.by_trigger_event.get(event.type, ()):
            key = flow.key_of(state.user_id, event.properties)
            if key is None:
                out.count(f"{flow.name}:no_key")
            else:
                self._enter(flow, key, state, event.timestamp_ms, event.event_id, out)
        self.on_entered(state, entered_segments, event.timestamp_ms, event.event_id, out)

    def triggers_among(self, moved: Transitions | None) -> list[str]:
        """The segments the user entered that start a flow."""
        starting = self.book.by_trigger_segment
        return [segment for segment in moved.entered if segment in starting] if moved and starting else []

    def on_entered(self, state: UserState, segments: Sequence[str], at_ms: int, cause: str, out: FlowOutputs) -> None:
        """Start the flows that entering these segments triggers."""
        for segment in segments:
            for flow in self.book.by_trigger_segment.get(segment, ()):
                self._enter(flow, state.user_id, state, at_ms, cause, out)

    def _apply_to_runs(self, state: UserState, event: Event, out: FlowOutputs) -> None:
        at = event.timestamp_ms
        for run in list(state.flow_runs):
            flow = self.book.flows.get(run["flow"])
            if flow is None or not flow.concerns(run["key"], event.properties):
                continue
            if event.type in flow.exit_on:
                state.flow_runs = [r for r in state.flow_runs if r is not run]
                out.count(f"{flow.name}:goal")
                continue
            step = flow.steps[run["step"]] if run["step"] < len(flow.steps) else None
            if not isinstance(step, WaitFor) or event.type not in step.events:
                continue
            if step.on_event == run["step"]:
                # Waiting for quiet: each awaited event restarts the wait (a late one cannot shorten it).
                restarted = {**run, "due": max(run["due"], at + step.timeout_ms)}
                state.flow_runs = [restarted if r is run else r for r in state.flow_runs]
                continue
            state.flow_runs = [r for r in state.flow_runs if r is not run]
            if self.is_stale(at):
                _count_stale(flow, out)
                continue
            self._continue(flow, {**run, "due": None}, step.on_event, state, at, out)

    def _enter(self, flow: Flow, key: str, state: UserState, at_ms: int, cause: str, out: FlowOutputs) -> None:
        if any(r["flow"] == flow.name and r["key"] == key for r in state.flow_runs):
            return  # this run is under way; its own steps decide what the event means
        refusal = _reentry_refusal(flow, key, state, at_ms)
        if refusal:
            out.count(f"{flow.name}:{refusal}")
            return
        if self.is_stale(at_ms):
            # Not entered at all, so a later fresh trigger may still start the flow.
            _count_stale(flow, out)
            return
        if flow.supersede:
            kept = [r for r in state.flow_runs if r["flow"] != flow.name]
            out.count(f"{flow.name}:superseded", len(state.flow_runs) - len(kept))
            state.flow_runs = kept
        own = [r for r in state.flow_runs if r["flow"] == flow.name]
        if len(own) >= MAX_RUNS_PER_FLOW:
            state.flow_runs = [r for r in state.flow_runs if r is not own[0]]
            out.count(f"{flow.name}:evicted")
        state.flows_entered = {**state.flows_entered, flow.name: at_ms}
        keys = [k for k in state.flow_keys.get(flow.name, []) if k != key]
        state.flow_keys = {**state.flow_keys, flow.name: [*keys, key][-FLOW_KEYS_KEPT:]}
        # A flow one may re-enter needs a fresh run id each time, or its jobs would repeat ids.
        run_id = f"{key}@{at_ms}" if flow.reentry == "cooldown" else key
        out.count(f"{flow.name}:entered")
        run = {"flow": flow.name, "key": key, "run": run_id, "step": 0, "due": None, "cause": cause}
        self._continue(flow, run, 0, state, at_ms, out)

    def _continue(
        self, flow: Flow, run: dict[str, Any], index: int, state: UserState, at_ms: int, out: FlowOutputs
    ) -> None:
        """Run steps from `index` at instant `at_ms` until one waits or the flow ends."""
        for _ in range(MAX_STEPS_PER_INSTANT):
            if index == END:
                out.count(f"{flow.name}:completed")
                return
            step = flow.steps[index]
            if isinstance(step, Send):
                out.requests.append(_request(flow, index, step, run, at_ms))
                index = step.next
            elif isinstance(step, Split):
                ctx = EvalContext(state, at_ms, state.segments, _LazyScores(self._scores_of, state, at_ms))
                index = step.then if step.condition.holds(ctx) else step.otherwise
            else:
                wait = step.duration_ms if isinstance(step, Wait) else step.timeout_ms
                state.flow_runs = [*state.flow_runs, {**run, "step": index, "due": at_ms + wait}]
                return
        out.count(f"{flow.name}:step_limit")


def _request(flow: Flow, index: int, step: Send, run: dict[str, Any], at_ms: int) -> JobRequest:
    return JobRequest(
        flow.name,
        index + 1,
        step.template,
        run["run"],
        run["cause"],
        at_ms,
        flow.list_name,
        flow.category,
        step.experiment,
        step.best_hour_within_ms,
    )


def _count_stale(flow: Flow, out: FlowOutputs) -> None:
    out.count(f"{flow.name}:stale_trigger")
    out.stale_triggers += 1


def _reentry_refusal(flow: Flow, key: str, state: UserState, at_ms: int) -> str | None:
    entered = state.flows_entered.get(flow.name)
    if entered is None:
        return None
    if flow.reentry == "never":
        return "reentry_refused"
    if flow.reentry == "once_per_key":
        return "reentry_refused" if key in state.flow_keys.get(flow.name, []) else None
    return "cooling_down" if at_ms - entered < flow.cooldown_ms else None


class _LazyScores(Mapping[str, float]):
    """Model scores computed on first use: most splits test traits or segments, not models."""

    def __init__(self, scores_of: ScoresOf, state: UserState, at_ms: int) -> None:
        self._scores_of = scores_of
        self._state = state
        self._at_ms = at_ms
        self._scores: Mapping[str, float] | None = None

    def _all(self) -> Mapping[str, float]:
        if self._scores is None:
            self._scores = self._scores_of(self._state, self._at_ms)
        return self._scores

    def __getitem__(self, name: str) -> float:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
