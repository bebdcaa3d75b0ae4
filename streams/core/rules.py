"""The segment condition language: parsing with precise errors, evaluation, and the next
instant a condition can change without a new event.

Each kind of condition is one class registered in `CONDITION_KINDS`; adding a new kind
of input (a model score, say) means writing one class and registering it there.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any, ClassVar, Protocol

from streams.core.codegen import Code, literal
from streams.core.durations import parse_duration
from streams.core.errors import ConfigError
from streams.core.events import EVENT_TYPES
from streams.core.state import UserState
from streams.core.windows import AggregateSpec, granularity_for, total_and_next_expiry

ANY_EVENT = "*"
TRAITS = "traits"
FIRST_SEEN = "first_seen"
CART_EVENTS = frozenset({"cart_add", "cart_remove", "purchase"})
MODEL_SCORE = "model_score"
SCORES = ("open_7d", "click_7d", "purchase_7d")


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


Parser = Callable[[Any, str], Condition]
CONDITION_KINDS: dict[str, Parser] = {}


def kind(name: str) -> Callable[[Parser], Parser]:
    def register(parser: Parser) -> Parser:
        CONDITION_KINDS[name] = parser
        return parser

    return register


def parse_condition(raw: Any, where: str) -> Condition:
    """Build a condition from its YAML form; `where` locates it for error messages."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(
            f"{where} must be a mapping with exactly one of: {', '.join(sorted(CONDITION_KINDS))}; got {raw!r}"
        )
    [(name, body)] = raw.items()
    parser = CONDITION_KINDS.get(name)
    if parser is None:
        raise ConfigError(f"{where}: unknown condition `{name}`; expected one of: {', '.join(sorted(CONDITION_KINDS))}")
    return parser(body, f"{where}.{name}")


# ---- combinators -------------------------------------------------------------------


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


def _parts(body: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{where} must be a non-empty list of conditions; got {body!r}")
    return tuple(parse_condition(part, f"{where}[{i}]") for i, part in enumerate(body))


kind("all")(lambda body, where: AllOf(_parts(body, where)))
kind("any")(lambda body, where: AnyOf(_parts(body, where)))
kind("not")(lambda body, where: Not(parse_condition(body, where)))


# ---- comparisons -------------------------------------------------------------------

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


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op in ("in", "not_in"):
        return (actual in expected) == (op == "in")
    try:
        return COMPARISONS[op](actual, expected)
    except TypeError:  # e.g. a text trait compared with a number: not a match
        return False


def _fields(body: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConfigError(f"{where} must be a mapping; got {body!r}")
    missing = required - set(body)
    if missing:
        raise ConfigError(f"{where} needs `{sorted(missing)[0]}`")
    unknown = set(body) - required - optional
    if unknown:
        raise ConfigError(
            f"{where}: unknown field `{sorted(unknown)[0]}`; allowed: {', '.join(sorted(required | optional))}"
        )
    return body


def _threshold(body: dict[str, Any], where: str) -> tuple[str, float]:
    op = body.get("op", "gte")
    if op not in COMPARISONS:
        raise ConfigError(f"{where}.op must be one of {', '.join(COMPARISONS)}; got {op!r}")
    value = body.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.value must be a number; got {value!r}")
    return op, float(value)


def _event_type(value: Any, where: str, allow_any: bool = False) -> str:
    allowed = (*EVENT_TYPES, "any") if allow_any else EVENT_TYPES
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {', '.join(allowed)}; got {value!r}")
    return ANY_EVENT if value == "any" else str(value)


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
        compare = f"{code.constant(_compare)}({literal(self.op)}, state.traits[{trait}], {code.constant(self.value)})"
        code.write(f"{holds}, {flip} = {trait} in state.traits and {compare}, None")

    def inputs(self) -> Inputs:
        return {TRAITS: Moves.EITHER}


@kind("trait")
def _parse_trait(body: Any, where: str) -> Condition:
    fields = _fields(body, where, {"name", "op"}, {"value"})
    op = fields["op"]
    if op not in TraitIs.OPS:
        raise ConfigError(f"{where}.op must be one of {', '.join(TraitIs.OPS)}; got {op!r}")
    value = fields.get("value")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise ConfigError(f"{where}.value must be a list for `{op}`; got {value!r}")
    if op not in ("exists", "missing") and "value" not in fields:
        raise ConfigError(f"{where} needs `value` for `{op}`")
    return TraitIs(str(fields["name"]), op, tuple(value) if isinstance(value, list) else value)


# ---- behaviour over rolling windows ------------------------------------------------


@dataclass(frozen=True)
class WindowTotal(Checked):
    spec: AggregateSpec
    window_ms: int
    op: str
    value: float

    def emit(self, code: Code, holds: str, flip: str) -> None:
        # Totals are numbers, so the comparison needs none of `_compare`'s guards.
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


def _parse_window(body: Any, where: str, summed: bool) -> Condition:
    required = {"event", "within", "field"} if summed else {"event", "within"}
    fields = _fields(body, where, required, {"where", "op", "value"})
    event_type = _event_type(fields["event"], f"{where}.event")
    window_ms = parse_duration(fields["within"], f"{where}.within")
    where_filter = fields.get("where", {})
    if not isinstance(where_filter, dict) or not all(
        isinstance(v, str | int | float | bool) for v in where_filter.values()
    ):
        raise ConfigError(f"{where}.where must map property names to values; got {where_filter!r}")
    if summed and not isinstance(fields["field"], str):
        raise ConfigError(f"{where}.field must name a numeric property such as `total`; got {fields['field']!r}")
    op, value = _threshold({"op": fields.get("op", "gte"), "value": fields.get("value", 1)}, where)
    spec = AggregateSpec(
        event_type, tuple(sorted(where_filter.items())), fields["field"] if summed else None, granularity_for(window_ms)
    )
    return WindowTotal(spec, window_ms, op, value)


kind("count")(lambda body, where: _parse_window(body, where, summed=False))
kind("sum")(lambda body, where: _parse_window(body, where, summed=True))


# ---- recency, first seen, cart -----------------------------------------------------


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


@kind("last")
def _parse_last(body: Any, where: str) -> Condition:
    fields = _fields(body, where, {"event"}, {"within", "older_than", "never"})
    chosen = [name for name in ("within", "older_than", "never") if name in fields]
    if len(chosen) != 1:
        raise ConfigError(f"{where} needs exactly one of `within`, `older_than`, `never`")
    event_type = _event_type(fields["event"], f"{where}.event", allow_any=True)
    if chosen == ["never"] and fields["never"] is not True:
        raise ConfigError(f"{where}.never must be `true`; got {fields['never']!r}")
    within = parse_duration(fields["within"], f"{where}.within") if "within" in fields else None
    older = parse_duration(fields["older_than"], f"{where}.older_than") if "older_than" in fields else None
    return LastSeen(event_type, within, older)


@dataclass(frozen=True)
class FirstSeenWithin(Leaf):
    within_ms: int

    def emit(self, code: Code, holds: str, flip: str) -> None:
        _emit_turning(code, holds, flip, "state.first_seen_ms", "not {}", "{}", self.within_ms, holds_before=True)

    def inputs(self) -> Inputs:
        # Only an event that sets the first-seen time changes it; time does the rest.
        # A late event moves first-seen back, which can end the window.
        return {FIRST_SEEN: Moves.EITHER}


@kind("first_seen")
def _parse_first_seen(body: Any, where: str) -> Condition:
    fields = _fields(body, where, {"within"}, set())
    return FirstSeenWithin(parse_duration(fields["within"], f"{where}.within"))


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


@kind("cart")
def _parse_cart(body: Any, where: str) -> Condition:
    fields = _fields(body, where, set(), {"idle_for"})
    return CartIdle(parse_duration(fields["idle_for"], f"{where}.idle_for") if "idle_for" in fields else 0)


@dataclass(frozen=True)
class InSegment(Leaf):
    name: str

    def emit(self, code: Code, holds: str, flip: str) -> None:
        code.write(f"{holds}, {flip} = {literal(self.name)} in members, None")

    def inputs(self) -> Inputs:
        return {f"segment:{self.name}": Moves.EITHER}


@kind("segment")
def _parse_segment(body: Any, where: str) -> Condition:
    if not isinstance(body, str) or not body:
        raise ConfigError(f"{where} must name another segment; got {body!r}")
    return InSegment(body)


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
        compare = f"{code.constant(_compare)}({literal(self.op)}, {actual}, {code.constant(self.value)})"
        code.write(
            f"""
            {actual} = scores.get({literal(self.score)}) if scores is not None else None
            {holds}, {flip} = {actual} is not None and {compare}, None
            """
        )

    def inputs(self) -> Inputs:
        return {MODEL_SCORE: Moves.EITHER}


@kind("score")
def _parse_score(body: Any, where: str) -> Condition:
    fields = _fields(body, where, {"model", "value"}, {"op"})
    if fields["model"] not in SCORES:
        raise ConfigError(f"{where}.model must be one of {', '.join(SCORES)}; got {fields['model']!r}")
    op, value = _threshold(fields, where)
    return ModelScore(fields["model"], op, value)
