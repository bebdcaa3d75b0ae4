"""What a condition is: whether it holds for a user at an instant, the next instant it can
flip without a new event, which inputs can change it and which way, and how conditions
combine (`all`, `any`, `not`).

Segments and flow splits are built from conditions; `condition_parser` reads them from
YAML and `user_conditions` holds the kinds that read a user's state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Protocol

from streams.core.codegen import Code
from streams.core.state import UserState
from streams.core.windows import AggregateSpec

# Input tags beside event types and aggregate keys: what an event can change.
ANY_EVENT = "*"
TRAITS = "traits"
FIRST_SEEN = "first_seen"
MODEL_SCORE = "model_score"


class Moves(IntEnum):
    """Which way a change to one input can move a condition, at a fixed instant.

    Evaluation after an event skips a segment the event can only move towards where the
    user already is: a member of a segment that only `RISES`, or a non-member of one
    that only `FALLS`.
    """

    FALLS = -1
    EITHER = 0
    RISES = 1

    def inverted(self) -> Moves:
        return Moves(-self)

    def merged(self, other: Moves) -> Moves:
        return self if self == other else Moves.EITHER


Inputs = Mapping[str, Moves]


def merge_inputs(parts: list[Inputs]) -> dict[str, Moves]:
    merged: dict[str, Moves] = {}
    for part in parts:
        for tag, moves in part.items():
            merged[tag] = merged[tag].merged(moves) if tag in merged else moves
    return merged


@dataclass(slots=True)
class EvalContext:
    """One user at one instant, plus the memberships already decided: what a condition's
    `check` reads (flow splits). Segment plans read the same from their locals."""

    state: UserState
    now_ms: int
    members_of: Collection[str]
    # Model scores by name, for flow splits; segments have none (see `ModelScore`).
    scores: Mapping[str, float] | None = None


# Whether a condition holds now, and the next instant it may flip without a new event.
Check = Callable[[EvalContext], tuple[bool, int | None]]


class Condition(Protocol):
    @property
    def check(self) -> Check: ...

    def emit(self, code: Code, holds: str, flip: str) -> None:
        """Write statements that set the locals named `holds` and `flip` to what `check`
        returns: whether it holds, and an instant after `now_ms` or None. They may read
        the locals `state`, `now_ms`, `members` (the memberships decided so far) and
        `scores` (a mapping or None), as `EvalContext` has them."""
        ...

    def holds(self, ctx: EvalContext) -> bool: ...

    def next_change(self, ctx: EvalContext) -> int | None: ...

    def inputs(self) -> Inputs:
        """The inputs whose change can change it, each with the way it can move it."""
        ...

    def aggregates(self) -> tuple[tuple[AggregateSpec, int], ...]: ...


class Checked:
    """`check` compiled from the condition's `emit`; `holds` and `next_change` are views of it."""

    def emit(self, code: Code, holds: str, flip: str) -> None:
        raise NotImplementedError

    @cached_property
    def check(self) -> Check:
        code = Code()
        code.write(
            """
            state = ctx.state
            now_ms = ctx.now_ms
            members = ctx.members_of
            scores = ctx.scores
            """
        )
        holds, flip = code.fresh("holds"), code.fresh("flip")
        self.emit(code, holds, flip)
        code.write(f"return {holds}, {flip}")
        check: Check = code.build("check", "ctx")
        return check

    def holds(self, ctx: EvalContext) -> bool:
        return self.check(ctx)[0]

    def next_change(self, ctx: EvalContext) -> int | None:
        return self.check(ctx)[1]


class Leaf(Checked):
    """Defaults for conditions that keep no aggregates."""

    def aggregates(self) -> tuple[tuple[AggregateSpec, int], ...]:
        return ()


# Conditions are frozen dataclasses without slots: `check` is cached on the instance.
@dataclass(frozen=True)
class AllOf(Checked):
    parts: tuple[Condition, ...]

    def emit(self, code: Code, holds: str, flip: str) -> None:
        # A failing part keeps the whole failing at least until that part's next change
        # (or an event, when it has none), whatever the other parts do: they need no
        # checking. While every part holds, the whole holds until the earliest next change.
        self._emit_parts(code, holds, flip, deciding=False)

    def _emit_parts(self, code: Code, holds: str, flip: str, deciding: bool) -> None:
        """The parts in turn until one has `holds` equal to `deciding`, whose next change
        then stands for the whole; otherwise the earliest next change of them all."""
        undecided, decides = ("{}", "not {}") if not deciding else ("not {}", "{}")
        first, *rest = self.parts
        first.emit(code, holds, flip)
        for part in rest:
            # Flat rather than nested: the depth of generated code stays that of the definition.
            with code.block(f"if {undecided.format(holds)}:"):
                part_holds, part_flip = code.fresh("holds"), code.fresh("flip")
                part.emit(code, part_holds, part_flip)
                code.write(
                    f"""
                    if {decides.format(part_holds)}:
                        {holds}, {flip} = {deciding}, {part_flip}
                    elif {part_flip} is not None and ({flip} is None or {part_flip} < {flip}):
                        {flip} = {part_flip}
                    """
                )

    def inputs(self) -> Inputs:
        # Both combinators are monotone in every part, so a part's direction carries through.
        return merge_inputs([part.inputs() for part in self.parts])

    def aggregates(self) -> tuple[tuple[AggregateSpec, int], ...]:
        return tuple(spec for part in self.parts for spec in part.aggregates())


@dataclass(frozen=True)
class AnyOf(AllOf):
    def emit(self, code: Code, holds: str, flip: str) -> None:
        # The dual of `AllOf`: a holding part decides the whole until its next change.
        self._emit_parts(code, holds, flip, deciding=True)


@dataclass(frozen=True)
class Not(Checked):
    part: Condition

    def emit(self, code: Code, holds: str, flip: str) -> None:
        self.part.emit(code, holds, flip)
        code.write(f"{holds} = not {holds}")

    def inputs(self) -> Inputs:
        return {tag: moves.inverted() for tag, moves in self.part.inputs().items()}

    def aggregates(self) -> tuple[tuple[AggregateSpec, int], ...]:
        return self.part.aggregates()
