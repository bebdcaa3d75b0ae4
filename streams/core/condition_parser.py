"""The condition language's parser: a condition's YAML form to a `Condition`, with errors
that say where the mistake is, what was expected and what was found.

Each kind of condition is one entry in `CONDITION_KINDS`; adding a new kind of input
(a model score, say) means writing one class in `user_conditions` and its parser here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.core.conditions import ANY_EVENT, AllOf, AnyOf, Condition, Not
from streams.core.durations import parse_duration
from streams.core.errors import ConfigError
from streams.core.events import EVENT_TYPES
from streams.core.user_conditions import (
    COMPARISONS,
    SCORES,
    CartIdle,
    FirstSeenWithin,
    InSegment,
    LastSeen,
    ModelScore,
    TraitIs,
    WindowTotal,
)
from streams.core.windows import AggregateSpec, granularity_for

Parser = Callable[[Any, str], Condition]


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


def _parts(body: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{where} must be a non-empty list of conditions; got {body!r}")
    return tuple(parse_condition(part, f"{where}[{i}]") for i, part in enumerate(body))


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


def _parse_first_seen(body: Any, where: str) -> Condition:
    fields = _fields(body, where, {"within"}, set())
    return FirstSeenWithin(parse_duration(fields["within"], f"{where}.within"))


def _parse_cart(body: Any, where: str) -> Condition:
    fields = _fields(body, where, set(), {"idle_for"})
    return CartIdle(parse_duration(fields["idle_for"], f"{where}.idle_for") if "idle_for" in fields else 0)


def _parse_segment(body: Any, where: str) -> Condition:
    if not isinstance(body, str) or not body:
        raise ConfigError(f"{where} must name another segment; got {body!r}")
    return InSegment(body)


def _parse_score(body: Any, where: str) -> Condition:
    fields = _fields(body, where, {"model", "value"}, {"op"})
    if fields["model"] not in SCORES:
        raise ConfigError(f"{where}.model must be one of {', '.join(SCORES)}; got {fields['model']!r}")
    op, value = _threshold(fields, where)
    return ModelScore(fields["model"], op, value)


CONDITION_KINDS: dict[str, Parser] = {
    "all": lambda body, where: AllOf(_parts(body, where)),
    "any": lambda body, where: AnyOf(_parts(body, where)),
    "not": lambda body, where: Not(parse_condition(body, where)),
    "trait": _parse_trait,
    "count": lambda body, where: _parse_window(body, where, summed=False),
    "sum": lambda body, where: _parse_window(body, where, summed=True),
    "last": _parse_last,
    "first_seen": _parse_first_seen,
    "cart": _parse_cart,
    "segment": _parse_segment,
    "score": _parse_score,
}
