"""Triggered flows: which emails an event starts. The welcome series' first step lives here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from streams.events import Event
from streams.state import UserState

# Fixed so that job ids are the same on every machine and in every release.
JOB_ID_NAMESPACE: Final = uuid.UUID("5b0c3f9e-6a8e-4d59-9a43-2f4a3c1f7e10")


@dataclass(frozen=True, slots=True)
class JobRequest:
    """An email that a flow step asks for; rendering and checks come after."""

    flow: str
    step: int
    template: str
    trigger_key: str
    trigger_event_id: str
    list_name: str = "marketing"


def job_id(flow: str, step: int, user_id: str, trigger_key: str) -> str:
    """The same trigger always yields the same id, so replays are recognisable downstream."""
    return str(uuid.uuid5(JOB_ID_NAMESPACE, f"{flow}\x1f{step}\x1f{user_id}\x1f{trigger_key}"))


def advance_flows(state: UserState, event: Event) -> tuple[UserState, list[JobRequest]]:
    """Enter flows that `event` triggers; return the updated state and the emails to send."""
    if event.type == "signup" and "welcome" not in state.flows_entered:
        entered = state.copy()
        entered.flows_entered = {**state.flows_entered, "welcome": event.timestamp_ms}
        # Welcome is once per user, so the user is the trigger key: a second signup sends nothing.
        return entered, [
            JobRequest("welcome", 1, "welcome", trigger_key=state.user_id, trigger_event_id=event.event_id)
        ]
    return state, []
