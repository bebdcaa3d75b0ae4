"""Plans: the segments some changed inputs can affect, evaluated by one generated function.

A plan's function takes a user's state, the instant, the memberships and the next check
known so far, and returns the memberships (the same dict when none moved), the segments
entered and exited, and the next instant a condition can flip without a new event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from streams.core.codegen import Code, literal
from streams.core.conditions import Condition
from streams.core.state import UserState

PlanFunction = Callable[
    [UserState, int, dict[str, int], int | None], tuple[dict[str, int], list[str], list[str], int | None]
]


class Movable(Enum):
    """Whom the changed inputs can move into or out of a segment."""

    ANYONE = "anyone"
    # Changes that can only raise a condition: members stay members, unchecked.
    NON_MEMBERS = "non-members"
    # Changes that can only lower one: non-members stay out, unchecked.
    MEMBERS = "members"
    # None of its inputs changed: it is in the plan for the segments it is built on.
    NOBODY = "nobody"


@dataclass(frozen=True, slots=True)
class PlanStep:
    segment: str
    condition: Condition
    movable: Movable
    # Segments earlier in the plan it is built on: if one of them moves, it is checked for anyone.
    built_on: tuple[str, ...] = ()


def compile_plan(steps: Sequence[PlanStep]) -> PlanFunction:
    """The function evaluating `steps`, which are in dependency order."""
    code = Code()
    code.write(
        """
        copied = False
        entered = []
        exited = []
        scores = None
        """
    )
    watched = {name for step in steps for name in step.built_on}
    moved = {name: code.fresh("moved") for name in watched}
    for flag in moved.values():
        code.write(f"{flag} = False")
    # Steps that can only move members out, and that no other step is built on, are
    # checked last under one guard: a user in none of them (most users, for segments
    # such as "inactive for 30 days") skips them all with one test.
    leaving = [s for s in steps if s.movable is Movable.MEMBERS and not s.built_on and s.segment not in watched]
    leaving_names = frozenset(step.segment for step in leaving) if len(leaving) > 1 else frozenset()
    for step in steps:
        if step.segment not in leaving_names:
            _emit_step(code, step, moved)
    if leaving_names:
        names = code.constant(leaving_names)
        with code.block(f"if not members.keys().isdisjoint({names}):"):
            for step in leaving:
                _emit_step(code, step, moved)
    code.write("return members, entered, exited, next_check")
    plan: PlanFunction = code.build("evaluate_plan", "state, now_ms, members, next_check")
    return plan


def _emit_step(code: Code, step: PlanStep, moved: dict[str, str]) -> None:
    if step.movable is Movable.ANYONE:
        _emit_check(code, step, None, moved.get(step.segment))
        return
    name = literal(step.segment)
    own = {Movable.NON_MEMBERS: f"{name} not in members", Movable.MEMBERS: f"{name} in members"}.get(step.movable)
    triggers = [moved[segment] for segment in step.built_on]
    # Unless a segment it is built on moved, passing the guard says whether the user is a member.
    was_member = None if triggers else step.movable is Movable.MEMBERS
    with code.block(f"if {' or '.join(filter(None, [own, *triggers]))}:"):
        _emit_check(code, step, was_member, moved.get(step.segment))


def _emit_check(code: Code, step: PlanStep, was_member: bool | None, moved_flag: str | None) -> None:
    name = literal(step.segment)
    holds, flip = code.fresh("holds"), code.fresh("flip")
    step.condition.emit(code, holds, flip)
    code.write(
        f"""
        if {flip} is not None and (next_check is None or {flip} < next_check):
            next_check = {flip}
        """
    )
    enter = f"members[{name}] = now_ms\nentered.append({name})"
    leave = f"del members[{name}]\nexited.append({name})"
    if was_member is None:
        with code.block(f"if {holds}:"), code.block(f"if {name} not in members:"):
            _emit_move(code, enter, moved_flag)
        with code.block(f"elif {name} in members:"):
            _emit_move(code, leave, moved_flag)
    else:
        with code.block(f"if not {holds}:" if was_member else f"if {holds}:"):
            _emit_move(code, leave if was_member else enter, moved_flag)


def _emit_move(code: Code, move: str, moved_flag: str | None) -> None:
    # Most evaluations move nothing: the memberships are copied at the first move only.
    code.write(
        """
        if not copied:
            members = dict(members)
            copied = True
        """
    )
    code.write(move)
    if moved_flag is not None:
        code.write(f"{moved_flag} = True")
