"""The steps a due timer entry goes through, in the order the processor runs them: take the
entry, measure its lateness, catch up on segment checks, run out ended flow waits, close
an expired propensity probe; and, after any event or timer, the next entry to index.

Like the event steps, each takes the state the caller owns and returns it with its own
fields replaced, together with typed outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import propensity
from streams.core.flow_engine import FlowEngine, FlowOutputs
from streams.core.segments import SegmentBook, Transitions
from streams.core.state import UserState

# Segment checks one timer catches up on; a longer backlog continues at the next tick.
MAX_CLOCK_HOPS = 16


@dataclass(slots=True)
class CaughtUp:
    """What the segment checks due since the user's last evaluation published, and what the
    flows their entries started asked for (None when they started none)."""

    transitions: list[Transitions]
    flows: FlowOutputs | None = None


def take_timer(state: UserState, due_ms: int) -> UserState:
    """The copy of the state a timer entry works on; it forgets its earliest indexed entry
    when that is the one firing."""
    state = state.copy()
    if state.indexed_due_ms == due_ms:
        # Later entries may remain; which is earliest is no longer known.
        state.indexed_due_ms = None
    return state


def lateness(engine: FlowEngine, state: UserState, now_ms: int) -> int | None:
    """How long ago the earliest segment check or flow wait now due fell due; None if none is."""
    due = [t for t in (state.next_check_ms, engine.next_due(state)) if t is not None and t <= now_ms]
    return now_ms - min(due) if due else None


def catch_up_segments(
    book: SegmentBook, engine: FlowEngine, state: UserState, now_ms: int
) -> tuple[UserState, CaughtUp | None]:
    """Evaluate the segments at each due instant in turn, so every flip happens at the
    moment it is due even when the worker was down for a while; None when none is due."""
    if state.next_check_ms is None or state.next_check_ms > now_ms:
        return state, None
    caught_up = CaughtUp([])
    for _ in range(MAX_CLOCK_HOPS):
        due = state.next_check_ms
        if due is None or due > now_ms:
            break
        evaluation = book.on_clock(state, due)
        state.segments = evaluation.segments
        state.next_check_ms = evaluation.next_check_ms
        if evaluation.transitions is not None:
            caught_up.transitions.append(evaluation.transitions)
        entered = engine.triggers_among(evaluation.transitions)
        if entered:
            if caught_up.flows is None:
                caught_up.flows = FlowOutputs([], [])
            engine.on_entered(state, entered, due, "clock", caught_up.flows)
    return state, caught_up


def run_due_waits(engine: FlowEngine, state: UserState, now_ms: int) -> tuple[UserState, FlowOutputs | None]:
    """Let the flow waits that have ended run out; None when none has."""
    due = engine.next_due(state)
    if due is None or due > now_ms:
        return state, None
    out = FlowOutputs([], [])
    engine.fire_due(state, now_ms, out)
    return state, out


def index_next_check(engine: FlowEngine, state: UserState) -> tuple[UserState, int | None]:
    """The instant to add to the timer index for this user, if the index needs one."""
    # The index is lazy: an entry is added only when the next check moves earlier than
    # the user's earliest entry. A later next check is left to the existing entry, which
    # fires, finds nothing due and re-indexes. Most events push the next check later
    # (recency windows restart), so most batches write no index entries at all.
    instants = (state.next_check_ms, propensity.due_ms(state.propensity_probe), engine.next_due(state))
    due = min((t for t in instants if t is not None), default=None)
    if due is None or (state.indexed_due_ms is not None and due >= state.indexed_due_ms):
        return state, None
    state.indexed_due_ms = due
    return state, due
