"""Flow definitions as data: a versioned YAML file parsed into validated `Flow`s.

A flow starts on an event or on entry into a segment, runs its steps in order (send,
wait, wait for an event, split), and ends at its last step, at `end`, or when one of
its goal events (`exit_on`) happens. Every problem found at load names the flow, the
step and the field, so an invalid file stops start-up with a message worth reading.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.core.condition_parser import parse_condition
from streams.core.conditions import Condition
from streams.core.definitions import read_definitions, refuse_duplicates, top_level_list, version_of
from streams.core.durations import parse_duration
from streams.core.errors import ConfigError
from streams.core.events import EVENT_TYPES

END = -1
USER_KEY = "user"
REENTRY = ("never", "once_per_key", "cooldown")
CATEGORIES = ("marketing", "transactional")
STEP_KINDS = ("send", "wait", "wait_for", "split")


@dataclass(frozen=True, slots=True)
class Send:
    template: str
    experiment: str | None
    next: int
    # `at: best_hour`: the send waits for the user's predicted best local hour, at most this long.
    best_hour_within_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    duration_ms: int
    next: int


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Wait until one of `events` (for this run's key) happens, or `timeout_ms` passes."""

    events: frozenset[str]
    timeout_ms: int
    on_event: int
    on_timeout: int


@dataclass(frozen=True, slots=True)
class Split:
    condition: Condition
    then: int
    otherwise: int


Step = Send | Wait | WaitFor | Split


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    description: str
    trigger_event: str | None
    trigger_segment: str | None
    # What tells runs apart: the user (one run per user), or an event property such as `cart_id`.
    key: str
    reentry: str
    cooldown_ms: int
    category: str
    list_name: str
    exit_on: frozenset[str]
    # A run for a new key ends the user's other runs of this flow (a new cart replaces the old).
    supersede: bool
    steps: tuple[Step, ...]

    def key_of(self, user_id: str, properties: dict[str, Any]) -> str | None:
        if self.key == USER_KEY:
            return user_id
        value = properties.get(self.key)
        return str(value) if value is not None else None

    def concerns(self, run_key: str, properties: dict[str, Any]) -> bool:
        """Whether an event belongs to the run with `run_key`: it names that key, or none at all."""
        if self.key == USER_KEY:
            return True
        value = properties.get(self.key)
        return value is None or str(value) == run_key


class FlowBook:
    """A validated set of flows, indexed by what can start, advance or end their runs."""

    def __init__(self, flows: list[Flow], version: str) -> None:
        self.flows = {flow.name: flow for flow in flows}
        self.version = version
        self.by_trigger_event: dict[str, list[Flow]] = defaultdict(list)
        self.by_trigger_segment: dict[str, list[Flow]] = defaultdict(list)
        for flow in flows:
            if flow.trigger_event:
                self.by_trigger_event[flow.trigger_event].append(flow)
            if flow.trigger_segment:
                self.by_trigger_segment[flow.trigger_segment].append(flow)
        # Event types that can matter to a running flow; others skip the runs entirely.
        self.run_events = frozenset(
            {e for flow in flows for e in flow.exit_on}
            | {e for flow in flows for step in flow.steps if isinstance(step, WaitFor) for e in step.events}
        )

    @classmethod
    def load(cls, path: Path, templates: set[str], experiments: set[str], segments: set[str]) -> FlowBook:
        text = read_definitions(path, "flow definitions")
        return cls.from_yaml(text, str(path), templates, experiments, segments)

    @classmethod
    def from_yaml(
        cls, text: str, source: str, templates: set[str], experiments: set[str], segments: set[str]
    ) -> FlowBook:
        raw = top_level_list(text, source, "flows")
        known = _Known(templates, experiments, segments)
        flows = [_parse_flow(entry, f"{source}: flows[{i}]", known) for i, entry in enumerate(raw)]
        refuse_duplicates([flow.name for flow in flows], source, "flow")
        return cls(flows, version_of(text))


@dataclass(frozen=True, slots=True)
class _Known:
    templates: set[str]
    experiments: set[str]
    segments: set[str]


FLOW_FIELDS = {"name", "description", "trigger", "key", "reentry", "category", "list", "exit_on", "supersede", "steps"}


def _parse_flow(entry: Any, where: str, known: _Known) -> Flow:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with name, trigger and steps; got {entry!r}")
    unknown = set(entry) - FLOW_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field `{sorted(unknown)[0]}`; allowed: {', '.join(sorted(FLOW_FIELDS))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"{where}.name must be a name like `cart_abandonment`; got {name!r}")
    where = f"flow `{name}`"
    trigger_event, trigger_segment = _trigger(entry.get("trigger"), f"{where}.trigger", known)
    key = entry.get("key", USER_KEY)
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}.key must be `user` or an event property such as `cart_id`; got {key!r}")
    if trigger_segment is not None and key != USER_KEY:
        raise ConfigError(f"{where}.key must be `user` for a segment trigger; got {key!r}")
    reentry, cooldown_ms = _reentry(entry.get("reentry", "never"), f"{where}.reentry")
    category = entry.get("category", "marketing")
    if category not in CATEGORIES:
        raise ConfigError(f"{where}.category must be one of {', '.join(CATEGORIES)}; got {category!r}")
    list_name = entry.get("list", "marketing")
    if not isinstance(list_name, str) or not list_name:
        raise ConfigError(f"{where}.list must name a mailing list; got {list_name!r}")
    exit_on = _event_types(entry.get("exit_on", []), f"{where}.exit_on")
    supersede = entry.get("supersede", False)
    if not isinstance(supersede, bool):
        raise ConfigError(f"{where}.supersede must be true or false; got {supersede!r}")
    steps = _steps(entry.get("steps"), where, known)
    description = entry.get("description", "")
    return Flow(
        name,
        str(description),
        trigger_event,
        trigger_segment,
        key,
        reentry,
        cooldown_ms,
        category,
        list_name,
        exit_on,
        supersede,
        steps,
    )


def _trigger(raw: Any, where: str, known: _Known) -> tuple[str | None, str | None]:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("event", "segment"):
        raise ConfigError(f"{where} must be `{{event: <type>}}` or `{{segment: <name>}}`; got {raw!r}")
    [(kind, value)] = raw.items()
    if kind == "event":
        if value not in EVENT_TYPES:
            raise ConfigError(f"{where}.event must be one of {', '.join(EVENT_TYPES)}; got {value!r}")
        return value, None
    if value not in known.segments:
        raise ConfigError(
            f"{where}.segment must name a defined segment ({', '.join(sorted(known.segments))}); got {value!r}"
        )
    return None, value


def _reentry(raw: Any, where: str) -> tuple[str, int]:
    if isinstance(raw, dict) and set(raw) == {"cooldown"}:
        return "cooldown", parse_duration(raw["cooldown"], f"{where}.cooldown")
    if raw in ("never", "once_per_key"):
        return raw, 0
    raise ConfigError(f"{where} must be `never`, `once_per_key` or `{{cooldown: 30d}}`; got {raw!r}")


def _event_types(raw: Any, where: str) -> frozenset[str]:
    if not isinstance(raw, list) or not all(value in EVENT_TYPES for value in raw):
        raise ConfigError(f"{where} must be a list of event types ({', '.join(EVENT_TYPES)}); got {raw!r}")
    return frozenset(raw)


def _steps(raw: Any, where: str, known: _Known) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}.steps must be a non-empty list of steps; got {raw!r}")
    ids: dict[str, int] = {END_NAME: END}
    for index, entry in enumerate(raw):
        step_id = entry.get("id") if isinstance(entry, dict) else None
        if step_id is not None:
            if not isinstance(step_id, str) or step_id in ids:
                raise ConfigError(f"{where}.steps[{index}].id must be a unique name; got {step_id!r}")
            ids[step_id] = index
    steps = tuple(
        _step(entry, index, len(raw), f"{where}.steps[{index}]", ids, known) for index, entry in enumerate(raw)
    )
    _refuse_loops_without_waiting(steps, where)
    return steps


END_NAME = "end"
BEST_HOUR = "best_hour"
MIN_BEST_HOUR_WINDOW_MS = 3_600_000
MAX_BEST_HOUR_WINDOW_MS = 48 * 3_600_000
STEP_FIELDS = {
    "send": {"experiment", "at", "within"},
    "wait": set(),
    "wait_for": set(),
    "split": set(),
}


def _step(entry: Any, index: int, count: int, where: str, ids: dict[str, int], known: _Known) -> Step:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with one of {', '.join(STEP_KINDS)}; got {entry!r}")
    kinds = [k for k in STEP_KINDS if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where} must have exactly one of {', '.join(STEP_KINDS)}; got {sorted(entry)}")
    [kind] = kinds
    allowed = {kind, "id", "next"} | STEP_FIELDS[kind]
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown field `{sorted(unknown)[0]}`; allowed: {', '.join(sorted(allowed))}")
    following = index + 1 if index + 1 < count else END
    next_step = _target(entry.get("next"), f"{where}.next", ids, following)
    body = entry[kind]
    if kind == "send":
        if body not in known.templates:
            raise ConfigError(f"{where}.send must name a template ({', '.join(sorted(known.templates))}); got {body!r}")
        experiment = entry.get("experiment")
        if experiment is not None and experiment not in known.experiments:
            raise ConfigError(
                f"{where}.experiment must name an experiment ({', '.join(sorted(known.experiments))}); "
                f"got {experiment!r}"
            )
        return Send(body, experiment, next_step, _best_hour_within(entry, where))
    if kind == "wait":
        return Wait(parse_duration(body, f"{where}.wait"), next_step)
    if kind == "wait_for":
        return _wait_for(body, f"{where}.wait_for", ids, following)
    return _split(body, f"{where}.split", ids, following)


def _best_hour_within(entry: dict[str, Any], where: str) -> int | None:
    """`at: best_hour` with `within` (default 24h, from 1h to 48h), or None when `at` is absent."""
    if "at" not in entry:
        if "within" in entry:
            raise ConfigError(f"{where}.within needs `at: best_hour` beside it; got within {entry['within']!r} alone")
        return None
    if entry["at"] != BEST_HOUR:
        raise ConfigError(f"{where}.at must be `{BEST_HOUR}` (the user's predicted best hour); got {entry['at']!r}")
    within = parse_duration(entry.get("within", "24h"), f"{where}.within")
    if not MIN_BEST_HOUR_WINDOW_MS <= within <= MAX_BEST_HOUR_WINDOW_MS:
        raise ConfigError(
            f"{where}.within must be from 1h to 48h (a best hour comes once a day); got {entry['within']!r}"
        )
    return within


def _wait_for(body: Any, where: str, ids: dict[str, int], following: int) -> WaitFor:
    fields = {"events", "timeout", "on_event", "on_timeout"}
    if not isinstance(body, dict) or not {"events", "timeout"} <= set(body) or set(body) - fields:
        raise ConfigError(f"{where} must have events and timeout, and may have on_event, on_timeout; got {body!r}")
    events = _event_types(body["events"], f"{where}.events")
    if not events:
        raise ConfigError(f"{where}.events must name at least one event type")
    return WaitFor(
        events,
        parse_duration(body["timeout"], f"{where}.timeout"),
        _target(body.get("on_event"), f"{where}.on_event", ids, following),
        _target(body.get("on_timeout"), f"{where}.on_timeout", ids, following),
    )


def _split(body: Any, where: str, ids: dict[str, int], following: int) -> Split:
    if not isinstance(body, dict) or "if" not in body or set(body) - {"if", "then", "else"}:
        raise ConfigError(f"{where} must have `if` and may have `then` and `else`; got {body!r}")
    condition = parse_condition(body["if"], f"{where}.if")
    if condition.aggregates():
        raise ConfigError(
            f"{where}.if counts events over a window, which only segments keep; "
            "define a segment with that condition and test `segment: <name>` here"
        )
    return Split(
        condition,
        _target(body.get("then"), f"{where}.then", ids, following),
        _target(body.get("else"), f"{where}.else", ids, following),
    )


def _target(raw: Any, where: str, ids: dict[str, int], default: int) -> int:
    if raw is None:
        return default
    if raw not in ids:
        raise ConfigError(f"{where} must be a step id ({', '.join(sorted(ids))}); got {raw!r}")
    return ids[raw]


def _refuse_loops_without_waiting(steps: tuple[Step, ...], where: str) -> None:
    """A cycle of sends and splits with no wait would send without end within one instant."""

    def instant_successors(index: int) -> list[int]:
        step = steps[index]
        if isinstance(step, Send):
            return [step.next]
        if isinstance(step, Split):
            return [step.then, step.otherwise]
        return []  # waits end an instant

    for start in range(len(steps)):
        seen: set[int] = set()
        frontier = [start]
        while frontier:
            index = frontier.pop()
            for successor in instant_successors(index):
                if successor == start:
                    raise ConfigError(f"{where}.steps[{start}] can reach itself without waiting; add a wait")
                if successor != END and successor not in seen:
                    seen.add(successor)
                    frontier.append(successor)
