"""Processing never changes a state it loaded: the worker's cache hands the core the very
objects it keeps, and keeps them when a batch's transaction fails. A step that changed one
in place would leave the cache ahead of what is durable; the replay after the failure would
then skip the user's events (their offsets already applied) and their updates would be lost."""

from __future__ import annotations

import copy
import itertools

from app.tools.generator import EventGenerator
from streams.core.batch import InputRecord
from streams.core.state import UserState
from tests.factories import BASE_TS
from tests.unit.core.support import Store, processor

BATCH = 250
HOUR_MS = 3_600_000


def test_no_batch_changes_the_states_it_loaded_events_or_clock() -> None:
    core, store = processor(clock_ms=lambda: now[0]), Store()
    now = [BASE_TS]
    messages = EventGenerator(400, seed=11, broken_share=0.0).messages(clock_ms=lambda: now[0])
    loaded: dict[tuple[int, str], tuple[UserState, UserState]] = {}

    def load(partition: int, user_id: str) -> UserState | None:
        state = store.load(partition, user_id)
        if state is not None:
            loaded[(partition, user_id)] = (state, copy.deepcopy(state))
        return state

    offsets = itertools.count()
    for _ in range(40):
        records = [
            InputRecord(0, next(offsets), key, value, now[0]) for key, value in itertools.islice(messages, BATCH)
        ]
        results = [core.process({0: records}, load)]
        store.save(results[0])
        # Hours pass between batches, so carts are abandoned and flows fall due on the clock.
        now[0] += HOUR_MS
        results.append(core.on_clock({0: [(now[0], user) for (_, user) in list(store.states)[:BATCH]]}, load))
        store.save(results[1])
        changed = [key for key, (state, before) in loaded.items() if state != before]
        assert not changed, f"processing changed {len(changed)} loaded states in place, e.g. {changed[:3]}"
        loaded.clear()
