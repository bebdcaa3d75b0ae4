"""Erasing a user (GDPR article 17, CCPA): the `erase` event's step, and the erasure record
that tells downstream systems to follow.

An erase replaces the user's state with a marker: in the changelog and RocksDB the user's
key becomes a tombstone, timer index entries go, and a marker named by a hash of the id
(not the id) keeps the erasure instant. The instant is the later of the erase event's
timestamp and the last event the state had seen, so every event of the erased person is at
or before it: those events, replayed or late, are skipped (`erased`) and cannot bring the
person back. An event after the instant is someone signing up again: it starts a new state,
which keeps the instant for the old events that may still arrive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from streams.core.batch import BatchResult, Erasure, InputRecord
from streams.core.events import Event
from streams.core.jobs import format_time
from streams.core.segments import Transitions
from streams.core.state import UserState

ERASE: Final = "erase"


def marker_id(user_id: str) -> str:
    """What names a user's erasure marker: a hash, so the store keeps no id of an erased person."""
    return hashlib.blake2b(user_id.encode(), digest_size=16, person=b"tidemail-erased").hexdigest()


def is_erased(state: UserState, event: Event) -> bool:
    """Whether `event` belongs to a person erased under this user id (it is not newer than the erasure)."""
    return state.erased_ms is not None and event.timestamp_ms <= state.erased_ms


def is_marker(state: UserState) -> bool:
    """Whether `state` only stands for an erasure marker: no event has been applied to it."""
    return state.first_seen_ms == 0


def erase_user(
    before: UserState, event: Event, record: InputRecord, now_ms: int, definition_version: str, result: BatchResult
) -> UserState:
    """Erase the user of an `erase` event; returns what stands for them for the rest of the batch.

    The user leaves every segment (published like any segment change, so member lists
    downstream and the worker's segment sizes follow), their earliest timer entry goes (the
    shell removes later ones), and the trainer is told to forget its per-user part."""
    user_id, partition = event.user_id, record.partition
    erased_ms = max(event.timestamp_ms, before.last_seen_ms, before.erased_ms or 0)
    erasure = Erasure(record, user_id, event.event_id, erased_ms, now_ms, event.properties.get("source"))
    result.changes.erasures.setdefault(partition, {})[user_id] = erasure
    if before.indexed_due_ms is not None:
        result.changes.timer_removals.setdefault(partition, []).append((before.indexed_due_ms, user_id))
    if before.segments:
        left = Transitions(user_id, erased_ms, event.event_id, definition_version, exited=sorted(before.segments))
        result.outputs.segment_transitions.append((partition, left))
    result.training.forgotten.append(user_id)
    result.counts.applied_by_type[ERASE] += 1
    return UserState(user_id, applied_offset=record.offset, erased_ms=erased_ms)


def drop_markers(changed: dict[str, UserState], erased: Mapping[str, Erasure]) -> None:
    """Take the users erased in a batch whose erasure no later event followed out of `changed`:
    their key becomes a tombstone, not a state."""
    for user_id in erased:
        if is_marker(changed[user_id]):
            del changed[user_id]


def erasure_id(erasure: Erasure) -> str:
    """The erasure record's id, from the erase event's place: a replay of it publishes nothing new."""
    return f"{erasure.record.partition}:{erasure.record.offset}:erasure"


def erasure_record(erasure: Erasure) -> dict[str, Any]:
    """What the erasures topic carries, keyed by user id (see docs/privacy-and-security.md, Erasure and export)."""
    return {
        "erasure_id": erasure_id(erasure),
        "user_id": erasure.user_id,
        "event_id": erasure.event_id,
        "erased_at": format_time(erasure.erased_ms),
        "processed_at": format_time(erasure.processed_ms),
        "source": erasure.source,
    }


def erase_event(user_id: str, event_id: str, at_ms: int, source: str) -> dict[str, Any]:
    """The `erase` event the API and the CLI publish for an operator's request."""
    properties = {"source": source}
    return {"event_id": event_id, "user_id": user_id, "type": ERASE, "timestamp": at_ms, "properties": properties}
