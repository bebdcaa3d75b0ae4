"""The conditions on one thing about a user: a trait, a total over a rolling window, when
an event was last or first seen, the cart, another segment, a model score.

Each writes its own code (`emit`) and names the inputs that can change it (`inputs`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from streams.core.codegen import Code, literal
from streams.core.conditions import ANY_EVENT, FIRST_SEEN, MODEL_SCORE, TRAITS, Checked, Inputs, Leaf, Moves
from streams.core.windows import AggregateSpec, total_and_next_expiry

CART_EVENTS = frozenset({"cart_add", "cart_remove", "purchase"})
SCORES = ("open_7d", "click_7d", "purchase_7d")

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
# The same comparisons as written in generated code.
OPERATORS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def matches(op: str, actual: Any, expected: Any) -> bool:
    """Whether `actual` compares with `expected` as `op` says (`gte`, `in`, ...)."""
    if op in ("in", "not_in"):
        return (actual in expected) == (op == "in")
    try:
        return COMPARISONS[op](actual, expected)
    except TypeError:  # e.g. a text trait compared with a number: not a match
        return False


@dataclass(frozen=True)
class TraitIs(Leaf):
    trait: str
    op: str
    value: Any
    OPS: ClassVar[tuple[str, ...]] = (*COMPARISONS, "in", "not_in", "exists", "missing")

    def emit(self, code: Code, holds: str, flip: str) -> None:
        trait = literal(self.trait)
        if self.op in ("exists", "missing"):
            code.write(f"{holds}, {flip} = {trait} {'in' if self.op == 'exists' else 'not in'} state.traits, None")
            return
        compare = f"{code.constant(matches)}({literal(self.op)}, state.traits[{trait}], {code.constant(self.value)})"
        code.write(f"{holds}, {flip} = {trait} in state.traits and {compare}, None")

    def inputs(self) -> Inputs:
        return {TRAITS: Moves.EITHER}


@dataclass(frozen=True)
class WindowTotal(Checked):
    spec: AggregateSpec
    window_ms: int
    op: str
    value: float

    def emit(self, code: Code, holds: str, flip: str) -> None:
        # Totals are numbers, so the comparison needs none of `matches`' guards.
        buckets, amount = code.fresh("buckets"), code.fresh("amount")
        total = code.constant(total_and_next_expiry)
        code.write(
            f"""
            {buckets} = state.windows.get({literal(self.spec.key)})
            if not {buckets}:
                {holds}, {flip} = {COMPARISONS[self.op](0.0, self.value)}, None
            else:
                {amount}, {flip} = {total}({buckets}, {self.spec.granularity_ms + self.window_ms}, now_ms)
                {holds} = {amount} {OPERATORS[self.op]} {code.constant(self.value)}
            """
        )

    def inputs(self) -> Inputs:
        # Only an event that adds to this aggregate changes it; time does the rest. A count
        # only grows; a sum may add a negative amount.
        grows = self.spec.field is None
        moves = Moves.EITHER
        if grows and self.op in ("gt", "gte"):
            moves = Moves.RISES
        elif grows and self.op in ("lt", "lte"):
            moves = Moves.FALLS
        return {self.spec.key: moves}

    def aggregates(self) -> tuple[tuple[AggregateSpec, int], ...]:
        return ((self.spec, self.window_ms),)


def _emit_turning(
    code: Code, holds: str, flip: str, read: str, missing: str, since: str, span_ms: int, holds_before: bool
) -> None:
    """A condition on something read from the state (`read`): false when `missing` is true
    of it, otherwise turning at the instant `since` of it plus `span_ms` (it holds until
    then, or from then on). `missing` and `since` have `{}` where the value goes."""
    value = code.fresh("value")
    code.write(f"{value} = {read}")
    with code.block(f"if {missing.format(value)}:"):
        code.write(f"{holds}, {flip} = False, None")
    with code.block("else:"):
        code.write(
            f"""
            {flip} = {since.format(value)} + {span_ms}
            {holds} = now_ms {"<" if holds_before else ">="} {flip}
            if {flip} <= now_ms:
                {flip} = None
            """
        )


@dataclass(frozen=True)
class LastSeen(Leaf):
    """The last event of a type happened within a duration, longer ago than one, or never."""

    event_type: str
    within_ms: int | None
    older_than_ms: int | None

    def emit(self, code: Code, holds: str, flip: str) -> None:
        last = (
            "state.last_seen_ms or None"
            if self.event_type == ANY_EVENT
            else f"state.last_seen_by_type.get({literal(self.event_type)})"
        )
        if self.within_ms is not None:
            _emit_turning(code, holds, flip, last, "{} is None", "{}", self.within_ms, holds_before=True)
        elif self.older_than_ms is not None:
            _emit_turning(code, holds, flip, last, "{} is None", "{}", self.older_than_ms, holds_before=False)
        else:  # `never`
            code.write(f"{holds}, {flip} = ({last}) is None, None")

    def inputs(self) -> Inputs:
        # The last-seen time never moves back (late events keep the maximum).
        return {self.event_type: Moves.RISES if self.within_ms is not None else Moves.FALLS}


@dataclass(frozen=True)
class FirstSeenWithin(Leaf):
    within_ms: int

    def emit(self, code: Code, holds: str, flip: str) -> None:
        _emit_turning(code, holds, flip, "state.first_seen_ms", "not {}", "{}", self.within_ms, holds_before=True)

    def inputs(self) -> Inputs:
        # Only an event that sets the first-seen time changes it; time does the rest.
        # A late event moves first-seen back, which can end the window.
        return {FIRST_SEEN: Moves.EITHER}


@dataclass(frozen=True)
class CartIdle(Leaf):
    """A non-empty cart untouched for at least `idle_ms` (0: merely non-empty)."""

    idle_ms: int

    def emit(self, code: Code, holds: str, flip: str) -> None:
        missing = 'not {0} or not {0}["items"]'
        _emit_turning(code, holds, flip, "state.cart", missing, '{}["updated_ms"]', self.idle_ms, holds_before=False)

    def inputs(self) -> Inputs:
        # A late cart_add can start a new cart that is idle already: either way.
        return dict.fromkeys(CART_EVENTS, Moves.EITHER)


@dataclass(frozen=True)
class InSegment(Leaf):
    name: str

    def emit(self, code: Code, holds: str, flip: str) -> None:
        code.write(f"{holds}, {flip} = {literal(self.name)} in members, None")

    def inputs(self) -> Inputs:
        return {f"segment:{self.name}": Moves.EITHER}


@dataclass(frozen=True)
class ModelScore(Leaf):
    """A propensity model's chance for the user, compared with a threshold.

    Only flow splits can use it: a score moves whenever the models retrain, so a segment
    built on one could not replay to the same transitions."""

    score: str
    op: str
    value: float

    def emit(self, code: Code, holds: str, flip: str) -> None:
        actual = code.fresh("actual")
        compare = f"{code.constant(matches)}({literal(self.op)}, {actual}, {code.constant(self.value)})"
        code.write(
            f"""
            {actual} = scores.get({literal(self.score)}) if scores is not None else None
            {holds}, {flip} = {actual} is not None and {compare}, None
            """
        )

    def inputs(self) -> Inputs:
        return {MODEL_SCORE: Moves.EITHER}
