"""User state as stored in RocksDB and the `users` changelog: bytes in, bytes out.

A stored state is a version byte and a JSON array of the fields in `STORED_FIELDS` order,
the trailing fields that hold their default left out, and every instant (a millisecond
timestamp) written relative to `first_seen_ms`, which is stored as it is. Field names and
13-digit instants were most of a JSON object's bytes (docs/contracts.md, Per-user state).

States stored as a JSON object (the format before the version byte, whose first byte is
`{`) are still read, so a worker upgraded on an existing table and changelog needs no
migration step: each state is rewritten in the current format the next time it changes.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
from collections.abc import Callable
from typing import Any, Final

import orjson

from models.propensity import Probe
from streams.core.state import ExperimentSend, UserState
from streams.core.windows import from_bucket_map

FORMAT_VERSION: Final = 2
_HEADER: Final = bytes([FORMAT_VERSION])

# The stored order. A new field of UserState is appended here, never inserted: states
# stored before it are shorter arrays and read back with the new field's default.
STORED_FIELDS: Final = (
    "user_id",
    "applied_offset",
    "first_seen_ms",
    "recent_event_ids",
    "traits",
    "last_seen_ms",
    "counts",
    "last_seen_by_type",
    "daily_counts",
    "interests",
    "segments",
    "next_check_ms",
    "indexed_due_ms",
    "recent_interactions",
    "propensity_probe",
    "engagement_hours",
    "windows",
    "signed_up_ms",
    "revenue",
    "daily_revenue",
    "cart",
    "recent_purchases",
    "last_email_open_ms",
    "last_email_click_ms",
    "marketing_sends",
    "flows_entered",
    "flow_keys",
    "flow_runs",
    "experiment_jobs",
    "subscriptions",
    "unsubscribed_lists",
    "hard_bounced_ms",
    "erased_ms",
)


class StateFormatError(ValueError):
    """Stored bytes that are not a user state this version can read."""


def encode_state(state: UserState) -> bytes:
    values = list(_read_fields(state))
    shift = -state.first_seen_ms
    if shift:
        for position in _INSTANT_POSITIONS:
            if values[position] is not None:
                values[position] += shift
    for position, store in _STORED_BY_POSITION:
        if values[position]:  # an empty container or None is stored as it is
            values[position] = store(values[position], shift)
    kept = len(values)
    while kept > 0 and values[kept - 1] == _DEFAULTS[kept - 1]:
        kept -= 1
    return _HEADER + orjson.dumps(values[:kept], default=tuple_as_list)


def decode_state(raw: bytes) -> UserState:
    if raw[:1] == b"{":
        return _decode_object(raw)
    if raw[:1] != _HEADER:
        version = raw[0] if raw else None
        raise StateFormatError(f"user state: unknown format version {version!r} (this release reads {FORMAT_VERSION})")
    values = orjson.loads(raw[1:])
    if not isinstance(values, list) or len(values) > len(STORED_FIELDS) or not values:
        raise StateFormatError(f"user state: expected an array of 1 to {len(STORED_FIELDS)} fields")
    if len(values) < len(STORED_FIELDS):
        values += [copy.copy(default) for default in _DEFAULTS[len(values) :]]  # fresh containers
    shift = values[2]
    if shift:
        for position in _INSTANT_POSITIONS:
            if values[position] is not None:
                values[position] += shift
    for position, load in _LOADED_BY_POSITION:
        if values[position]:
            values[position] = load(values[position], shift)
    return UserState(**dict(zip(STORED_FIELDS, values, strict=True)))


def state_document(state: UserState) -> dict[str, Any]:
    """The state as a JSON object with absolute instants: what an export shows a person."""
    document: dict[str, Any] = orjson.loads(orjson.dumps(state, default=tuple_as_list))
    return document


def _decode_object(raw: bytes) -> UserState:
    doc = orjson.loads(raw)
    probe = doc.get("propensity_probe")
    if probe is not None:
        doc["propensity_probe"] = Probe(**probe)
    if sends := doc.get("experiment_jobs"):
        doc["experiment_jobs"] = [ExperimentSend(*sent) for sent in sends]
    state = UserState(**doc)
    if any(isinstance(buckets, dict) for buckets in state.windows.values()):
        state.windows = {
            key: from_bucket_map(buckets) if isinstance(buckets, dict) else buckets
            for key, buckets in state.windows.items()
        }
    return state


def tuple_as_list(value: Any) -> list[Any]:
    """orjson's `default`: it writes dataclasses natively but not named tuples, kept as arrays."""
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in user state")


def _instant_values(values: dict[str, Any], shift: int) -> dict[str, Any]:
    return {key: value + shift for key, value in values.items()} if shift else values


def _instant_list(values: list[Any], shift: int) -> list[Any]:
    return [value + shift for value in values] if shift else values


def _interests(values: dict[str, list[float]], shift: int) -> dict[str, list[float]]:
    return {name: [score, touched + shift] for name, (score, touched) in values.items()} if shift else values


def _windows(values: dict[str, list[float]], shift: int) -> dict[str, list[float]]:
    """Buckets are flat [start, amount, start, amount, ...]: the starts are instants."""
    if not shift:
        return values
    return {
        key: [value + shift if position % 2 == 0 else value for position, value in enumerate(buckets)]
        for key, buckets in values.items()
    }


def _store_probe(probe: Probe, shift: int) -> list[Any]:
    return [probe.at + shift, probe.x, probe.y]


def _load_probe(stored: list[Any], shift: int) -> Probe:
    return Probe(stored[0] + shift, stored[1], stored[2])


def _store_experiment_jobs(sends: list[ExperimentSend], shift: int) -> list[Any]:
    return [[*send[:3], send.sent_ms + shift, send.rewarded] for send in sends]


def _load_experiment_jobs(stored: list[Any], shift: int) -> list[ExperimentSend]:
    return [
        ExperimentSend(job_id, name, variant, sent + shift, rewarded)
        for job_id, name, variant, sent, rewarded in stored
    ]


# Instants, each an int or None, moved by the shift.
_INSTANTS: Final = (
    "last_seen_ms",
    "signed_up_ms",
    "last_email_open_ms",
    "last_email_click_ms",
    "hard_bounced_ms",
    "next_check_ms",
    "indexed_due_ms",
    "erased_ms",
)
# Containers of instants; each function is its own inverse given the opposite shift.
_INSTANT_CODECS: dict[str, Callable[[Any, int], Any]] = {
    "last_seen_by_type": _instant_values,
    "segments": _instant_values,
    "flows_entered": _instant_values,
    "marketing_sends": _instant_list,
    "interests": _interests,
    "windows": _windows,
}
# Records of their own are stored as arrays.
_STORE: dict[str, Callable[[Any, int], Any]] = {
    **_INSTANT_CODECS,
    "propensity_probe": _store_probe,
    "experiment_jobs": _store_experiment_jobs,
}
_LOAD: dict[str, Callable[[Any, int], Any]] = {
    **_INSTANT_CODECS,
    "propensity_probe": _load_probe,
    "experiment_jobs": _load_experiment_jobs,
}


def _default(name: str) -> Any:
    """The field's default (None, zero or empty: stored as it is); the user id has none."""
    spec = next(f for f in dataclasses.fields(UserState) if f.name == name)
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


_DEFAULTS: Final = tuple(_default(name) for name in STORED_FIELDS)
_read_fields = operator.attrgetter(*STORED_FIELDS)
_INSTANT_POSITIONS: Final = tuple(STORED_FIELDS.index(name) for name in _INSTANTS)
_STORED_BY_POSITION: Final = tuple((STORED_FIELDS.index(name), store) for name, store in _STORE.items())
_LOADED_BY_POSITION: Final = tuple((STORED_FIELDS.index(name), load) for name, load in _LOAD.items())
