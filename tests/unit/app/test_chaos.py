"""The chaos run's pure parts: its fault schedule, its world and the verifier's comparisons."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
from aiokafka.structs import ConsumerRecord

from app.tools.chaos_faults import WORKER_PAUSE, FaultCounts, schedule
from app.tools.chaos_verify import durable_states, exactly_once, last_outcomes, with_snapshot_choices_of
from app.tools.chaos_world import HELD_ZONE, held_quiet_hours, world_messages
from app.tools.generator import PLACES
from streams.core.state import UserState
from streams.core.state_codec import encode_state

AT_MS = 1_796_288_021_030


def test_the_schedule_holds_every_fault_asked_for_each_over_before_the_next() -> None:
    counts = FaultCounts(worker_kills=10, deliverer_kills=3, trainer_kills=1, broker_kills=1, redis_kills=1)
    faults = schedule(counts, (80.0, 720.0), seed=7, pause_s=15.0)
    assert Counter(f.kind for f in faults) == Counter(counts.kinds())
    assert all(80.0 <= f.at_s < 720.0 for f in faults)
    assert all(a.at_s + a.down_s <= b.at_s for a, b in itertools.pairwise(faults))
    assert [f.down_s for f in faults if f.kind == WORKER_PAUSE] == [15.0]
    assert schedule(counts, (80.0, 720.0), seed=7, pause_s=15.0) == faults
    assert schedule(counts, (80.0, 720.0), seed=8, pause_s=15.0) != faults


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
