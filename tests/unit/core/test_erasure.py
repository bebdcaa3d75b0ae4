"""An `erase` event through the pure core: the state gives way to a marker, segment changes,
the trainer and the erasures topic are told, and the erased person's events cannot bring
them back; a later signup starts afresh."""

from __future__ import annotations

from typing import Any

from streams.core.batch import BatchResult
from streams.core.erasure import erase_event, erasure_record, marker_id
from streams.core.processing import BatchProcessor
from streams.core.state import UserState
from tests.factories import BASE_TS, event_doc
from tests.unit.core.support import Store, processor, record, signup

MINUTE = 60_000


class ErasingStore(Store):
    """The shell's part in an erasure, as a dict: the state key goes, the marker stays, and a
    load of an erased id without a new state is an empty state remembering the erasure."""

    def __init__(self) -> None:
        super().__init__()
        self.markers: dict[tuple[int, str], int] = {}

    def load(self, partition: int, user_id: str) -> UserState | None:
        state = super().load(partition, user_id)
        if state is None and (erased_ms := self.markers.get((partition, user_id))) is not None:
            return UserState(user_id, erased_ms=erased_ms)
        return state

    def save(self, result: Any) -> None:
        for partition, erased in result.changes.erasures.items():
            for user_id, erasure in erased.items():
                self.markers[(partition, user_id)] = erasure.erased_ms
                self.states.pop((partition, user_id), None)
        super().save(result)


class Run:
    def __init__(self) -> None:
        self.processor: BatchProcessor = processor()
        self.store = ErasingStore()
        self.offset = 0

    def events(self, *docs: dict[str, Any]) -> BatchResult:
        records = [record(self.offset + n, doc) for n, doc in enumerate(docs)]
        self.offset += len(docs)
        result = self.processor.process({0: records}, self.store.load)
        self.store.save(result)
        return result

    def clock(self, due: list[tuple[int, str]]) -> BatchResult:
        result = self.processor.on_clock({0: due}, self.store.load)
        self.store.save(result)
        return result


def erase(user: str, ts: int, event_id: str = "erase-1") -> dict[str, Any]:
    return erase_event(user, event_id, ts, "crm")


def test_an_erase_leaves_a_marker_not_a_state_and_tells_segments_the_trainer_and_the_topic() -> None:
    run = Run()
    joined = run.events(signup("u1"), event_doc("page_view", "u1", ts=BASE_TS + MINUTE))
    segments = joined.changes.states[0]["u1"].segments
    assert segments
    # The CRM's clock is behind the user's last event: the marker still covers every event of theirs.
    erased = run.events(erase("u1", BASE_TS + 30_000))
    assert erased.changes.states == {0: {}}
    [erasure] = erased.changes.erasures[0].values()
    assert (erasure.user_id, erasure.erased_ms, erasure.source) == ("u1", BASE_TS + MINUTE, "crm")
    assert erasure.processed_ms == BASE_TS  # the processor's clock
    [(partition, left)] = erased.outputs.segment_transitions
    assert (partition, left.exited, left.entered) == (0, sorted(segments), [])
    assert erased.changes.segment_moves == {(0, "exited"): {name: 1 for name in segments}}
    assert erased.training.forgotten == ["u1"]
    assert erased.counts.applied_by_type == {"erase": 1}
    assert erased.outputs.jobs == []
    assert erasure_record(erasure) == {
        "erasure_id": f"0:{erasure.record.offset}:erasure",
        "user_id": "u1",
        "event_id": "erase-1",
        "erased_at": "2026-11-28T08:01:00.000Z",
        "processed_at": "2026-11-28T08:00:00.000Z",
        "source": "crm",
    }
    assert run.store.states == {}


def test_the_erased_persons_events_replayed_are_skipped_and_a_later_signup_starts_afresh() -> None:
    run = Run()
    history = [signup("u1"), event_doc("purchase", "u1", ts=BASE_TS + MINUTE)]
    run.events(*history)
    run.events(erase("u1", BASE_TS + 2 * MINUTE))
    # A replay (new offsets, the same events): nothing comes back, and each is counted.
    replayed = run.events(*history, event_doc("click", "u1", ts=BASE_TS + 2 * MINUTE))
    assert replayed.counts.skipped == {"erased": 3}
    assert replayed.changes.states == {0: {}}
    assert replayed.outputs.jobs == []
    assert run.store.states == {}
    back = run.events(signup("u1", first_name="Bea") | {"timestamp": BASE_TS + 3 * MINUTE, "event_id": "again"})
    state = back.changes.states[0]["u1"]
    assert (state.first_seen_ms, state.counts, state.revenue) == (BASE_TS + 3 * MINUTE, {"signup": 1}, {})
    assert state.first_name == "Bea"
    assert state.erased_ms == BASE_TS + 2 * MINUTE
    [job] = back.outputs.jobs
    assert job["subject"] == "Welcome to Shop, Bea!"
    # An old event arriving after the new signup still belongs to the person erased.
    late = run.events(event_doc("purchase", "u1", event_id="old-order", ts=BASE_TS + MINUTE))
    assert late.counts.skipped == {"erased": 1}
    assert run.store.states[(0, "u1")].revenue == {}


def test_an_erase_and_a_return_in_one_batch_leave_the_new_state_and_the_marker() -> None:
    run = Run()
    run.events(signup("u1"))
    result = run.events(
        erase("u1", BASE_TS + MINUTE),
        event_doc("click", "u1", event_id="late", ts=BASE_TS + 30_000),
        event_doc("signup", "u1", event_id="again", ts=BASE_TS + 2 * MINUTE),
    )
    assert result.counts.skipped == {"erased": 1}
    assert set(result.changes.erasures[0]) == {"u1"}
    state = result.changes.states[0]["u1"]
    assert (state.counts, state.first_seen_ms, state.erased_ms) == (
        {"signup": 1},
        BASE_TS + 2 * MINUTE,
        BASE_TS + MINUTE,
    )


def test_an_erased_users_timers_fire_nothing_and_go() -> None:
    run = Run()
    joined = run.events(signup("u1"))
    [(due, user)] = joined.changes.timer_additions[0]
    erased = run.events(erase("u1", BASE_TS + MINUTE))
    # The earliest entry the state knew of goes with the erasure; one left behind fires into nothing.
    assert erased.changes.timer_removals[0] == [(due, "u1")]
    fired = run.clock([(due + 1, user)])
    assert fired.changes.states == {0: {}}
    assert fired.changes.timer_removals[0] == [(due + 1, "u1")]
    assert fired.outputs.jobs == [] and fired.changes.timer_additions == {}


def test_erasing_an_id_never_seen_still_leaves_a_marker_and_a_record() -> None:
    result = Run().events(erase("ghost", BASE_TS))
    assert result.changes.states == {0: {}}
    assert result.changes.erasures[0]["ghost"].erased_ms == BASE_TS
    assert result.training.forgotten == ["ghost"]


def test_the_marker_names_a_hash_of_the_id_not_the_id() -> None:
    assert marker_id("ann@example.com") == marker_id("ann@example.com")
    assert "ann" not in marker_id("ann@example.com")
    assert marker_id("ann") != marker_id("ann ")
    assert len(marker_id("ann")) == 32
