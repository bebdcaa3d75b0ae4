"""The chaos run's pure parts: its fault schedule, its world and the verifier's comparisons."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
from aiokafka.structs import ConsumerRecord

from app.tools.chaos_faults import AFTERMATH_S, WORKER_PAUSE, FaultCounts, schedule
from app.tools.chaos_verify import compare_states, durable_states, exactly_once, last_outcomes, with_snapshot_choices_of
from app.tools.chaos_world import HELD_ZONE, held_quiet_hours, world_messages
from app.tools.generator import PLACES
from streams.core.batch import BatchResult
from streams.core.state import UserState
from streams.core.state_codec import encode_state

AT_MS = 1_796_288_021_030


def test_the_schedule_holds_every_fault_asked_for_each_over_a_while_before_the_next() -> None:
    counts = FaultCounts(worker_kills=10, deliverer_kills=3, trainer_kills=1, broker_kills=1, redis_kills=1)
    faults = schedule(counts, (80.0, 720.0), seed=7, pause_s=15.0)
    assert Counter(f.kind for f in faults) == Counter(counts.kinds())
    assert all(80.0 <= f.at_s < 720.0 for f in faults)
    assert all(a.at_s + a.down_s + AFTERMATH_S <= b.at_s + 1e-9 for a, b in itertools.pairwise(faults))
    assert [f.down_s for f in faults if f.kind == WORKER_PAUSE] == [15.0]
    assert schedule(counts, (80.0, 720.0), seed=7, pause_s=15.0) == faults
    assert schedule(counts, (80.0, 720.0), seed=8, pause_s=15.0) != faults


def test_a_paused_worker_runs_a_while_after_it_resumes_even_when_its_pause_outlasts_its_slot() -> None:
    # The short chaos test's schedule: four slots of 12 s, the pause (15 s) first.
    faults = schedule(FaultCounts(2, 1, 0, 0, 0, 1), (6.0, 54.0), seed=7, pause_s=15.0)
    pause = next(n for n, f in enumerate(faults) if f.kind == WORKER_PAUSE)
    assert pause + 1 < len(faults)
    assert faults[pause + 1].at_s >= faults[pause].at_s + 15.0 + AFTERMATH_S


def test_quiet_hours_hold_the_held_zone_and_no_other_zone_of_the_generator() -> None:
    start, end = (int(h) for h in held_quiet_hours(AT_MS).split("-"))
    for _, zone, _ in PLACES:
        hour = datetime.fromtimestamp(AT_MS / 1000, tz=ZoneInfo(zone)).hour
        inside = (hour - start) % 24 < (end - start) % 24
        assert inside == (zone == HELD_ZONE), zone


def test_the_world_erases_only_users_who_signed_up_in_the_held_zone_after_their_signup() -> None:
    messages = list(world_messages(1_000, 10_000, seed=3, erase_share=1.0))
    assert len(messages) == 10_000
    # Less the generator's broken messages (a few per thousand).
    docs = [orjson.loads(value) for key, value in messages if key != b"u-broken"]
    signed_up = {doc["user_id"]: n for n, doc in enumerate(docs) if doc["type"] == "signup"}
    zones = {doc["user_id"]: doc["context"]["timezone"] for doc in docs if doc["type"] == "signup"}
    erased = {doc["user_id"]: n for n, doc in enumerate(docs) if doc["type"] == "erase"}
    assert erased
    assert all(zones[user] == HELD_ZONE and signed_up[user] < n for user, n in erased.items())


def test_the_crm_sync_gives_every_user_a_profile_once_spread_over_the_run() -> None:
    messages = list(world_messages(2_000, 5_000, seed=3, erase_share=0.2, crm_sync=True))
    assert len(messages) == 5_000
    docs = [orjson.loads(value) for key, value in messages if key != b"u-broken"]
    profiles = [n for n, doc in enumerate(docs) if doc["event_id"].startswith("crm-")]
    assert sorted(docs[n]["user_id"] for n in profiles) == [f"u{n:06d}" for n in range(2_000)]
    # As many in each half of the run, not all at its start.
    halves = len([n for n in profiles if n < len(docs) / 2]), len([n for n in profiles if n >= len(docs) / 2])
    assert abs(halves[0] - halves[1]) < 50, halves


def test_ids_are_checked_exactly_once_with_optional_ones_allowed_once() -> None:
    found = Counter({"a": 1, "b": 2, "x": 1, "maybe": 1})
    check = exactly_once("jobs", ["a", "b", "c"], found, allowed=["maybe", "never"])
    assert (check.lost, check.duplicated, check.unexpected) == (["c"], ["b"], ["x"])
    assert not check.ok
    assert exactly_once("jobs", ["a"], Counter({"a": 1})).ok


def record(key: bytes, value: bytes | None, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, key, value, None, 0, 0, ())  # type: ignore[arg-type]


def test_the_changelog_gives_each_users_last_state_and_a_tombstone_removes_them() -> None:
    ann, bob = UserState("ann", applied_offset=1), UserState("bob", applied_offset=2)
    later = UserState("ann", applied_offset=9)
    changelog = [
        record(b"ann", encode_state(ann), 0),
        record(b"bob", encode_state(bob), 1),
        record(b"\x00checkpoint", b"{}", 2),
        record(b"ann", encode_state(later), 3),
        record(b"bob", None, 4),
    ]
    assert durable_states(changelog) == {"ann": later}


def test_a_state_behind_one_pass_is_reported_with_the_events_each_reflects() -> None:
    expected = BatchResult()
    expected.changes.states[0] = {
        "ann": UserState("ann", applied_offset=9, first_seen_ms=100),
        "bob": UserState("bob", applied_offset=4),
        "cy": UserState("cy", applied_offset=5),
    }
    durable = {"ann": UserState("ann", applied_offset=7, first_seen_ms=300), "cy": UserState("cy", applied_offset=5)}
    assert compare_states(expected, durable) == [
        "bob missing",
        "ann applied_offset/first_seen_ms (last event offset 9 in one pass, 7 found; "
        "first seen 100 in one pass, 300 found)",
    ]


def test_a_claim_after_an_outcome_does_not_hide_the_outcome() -> None:
    def outcome(job: str, what: str, offset: int) -> ConsumerRecord[bytes, bytes]:
        return record(job.encode(), orjson.dumps({"job_id": job, "outcome": what}), offset)

    records = [outcome("j1", "claimed", 0), outcome("j1", "sent", 1), outcome("j1", "claimed", 2)]
    records += [outcome("j2", "claimed", 3)]
    assert last_outcomes(records) == {"j1": "sent", "j2": "claimed"}


def test_the_instants_of_marketing_sends_come_from_the_worker_but_not_their_number() -> None:
    one_pass = UserState(user_id="u1", marketing_sends=[AT_MS])
    moved_to_best_hour = UserState(user_id="u1", marketing_sends=[AT_MS + 3_600_000])
    assert with_snapshot_choices_of(moved_to_best_hour, one_pass) == moved_to_best_hour
    sent_twice = UserState(user_id="u1", marketing_sends=[AT_MS, AT_MS + 3_600_000])
    assert with_snapshot_choices_of(sent_twice, one_pass) == one_pass
