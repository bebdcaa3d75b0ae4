"""The deliverer's side of an erasure: which jobs an erasure covers, the records it reads,
waiting jobs dropped as an erasure arrives, and a due job dropped before any claim."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from app.settings import Settings
from streams.core.clock import Clock
from streams.core.errors import InvalidJob
from streams.core.jobs import format_time
from streams.delivery.due import DueJobs
from streams.delivery.erasures import CLOCK_SKEW_MS, ErasedUsers, drop, read_erasure
from streams.delivery.messages import Job, parse_job
from streams.delivery.pending import Pending, PendingJobs
from streams.delivery.senders import Senders
from tests.unit.delivery.test_messages import job_doc

ERASED_AT = 1_800_000_000_000


def job(user: str = "ann", created_ms: int | None = ERASED_AT - 1, job_id: str = "j1") -> Job:
    doc = job_doc(job_id=job_id, user_id=user)
    if created_ms is None:
        del doc["created_at"]
    else:
        doc["created_at"] = format_time(created_ms)
    return parse_job(orjson.dumps(doc))


def dropped() -> float:
    return REGISTRY.get_sample_value("tidemail_deliveries_total", {"outcome": "erased"}) or 0.0


def test_an_erasure_covers_its_users_jobs_made_before_it_or_too_near_it_to_tell() -> None:
    erased = ErasedUsers()
    erased.note("ann", ERASED_AT)
    erased.note("ann", ERASED_AT - 10)  # an older erasure of the same id changes nothing
    assert erased.covers(job(created_ms=ERASED_AT - 86_400_000))
    assert erased.covers(job(created_ms=ERASED_AT + CLOCK_SKEW_MS))
    # Made well after: the jobs of someone who signed up again.
    assert not erased.covers(job(created_ms=ERASED_AT + CLOCK_SKEW_MS + 1))
    assert erased.covers(job(created_ms=None))
    assert not erased.covers(job(user="bob"))
    assert len(erased) == 1


def test_an_erasure_record_gives_its_user_and_when_the_worker_erased_them() -> None:
    value = orjson.dumps({"erasure_id": "0:7:erasure", "user_id": "ann", "processed_at": format_time(ERASED_AT)})
    assert read_erasure(value) == ("ann", ERASED_AT)
    for bad in (b"{not json", b"[]", b'{"user_id": "ann"}', b'{"user_id": 7, "processed_at": "x"}', None):
        with pytest.raises(InvalidJob):
            read_erasure(bad)
    with pytest.raises(InvalidJob, match="processed_at"):
        read_erasure(b'{"user_id": "ann", "processed_at": "yesterday"}')


def test_waiting_jobs_an_erasure_covers_leave_the_schedule_finished_and_unsent() -> None:
    jobs, due = PendingJobs(), DueJobs(Clock())
    held = [Pending(0, n, job(user, job_id=f"j{n}")) for n, user in enumerate(["ann", "bob", "ann"])]
    for pending in held:
        jobs.read(0, pending.offset, 0)
        jobs.hold(pending)
        due.add(ERASED_AT + 3_600_000, pending)
    erased = ErasedUsers()
    erased.note("ann", ERASED_AT)
    before = dropped()
    for pending in due.remove_where(lambda p: erased.covers(p.job)):
        drop(pending, jobs)
    assert dropped() == before + 2
    assert [jobs.holds(f"j{n}") for n in range(3)] == [False, True, False]
    # The partition may be committed up to bob's job, the first one unfinished.
    assert jobs.position(0) == 1


class Untouchable:
    """Claims, ledger, publisher and SMTP: a dropped job must reach none of them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} used for a job of an erased user")


async def test_a_due_job_of_an_erased_user_is_dropped_before_any_claim_or_send() -> None:
    jobs, erased, nothing = PendingJobs(), ErasedUsers(), Untouchable()
    pending = Pending(0, 0, job())
    jobs.read(0, 0, 0)
    jobs.hold(pending)
    erased.note("ann", ERASED_AT)
    config = Settings().delivery
    senders = Senders(config, Clock(), nothing, nothing, jobs, DueJobs(Clock()), nothing, erased)
    before = dropped()
    await senders._deliver(pending, nothing)
    assert dropped() == before + 1
    assert not jobs.holds("j1") and jobs.position(0) == 1


async def test_an_erasure_noted_after_the_senders_started_with_none_known_still_stops_a_send() -> None:
    jobs, erased, nothing = PendingJobs(), ErasedUsers(), Untouchable()
    # As at a deliverer's start on a topic with no erasure yet: the senders get the empty set.
    senders = Senders(Settings().delivery, Clock(), nothing, nothing, jobs, DueJobs(Clock()), nothing, erased)
    pending = Pending(0, 0, job())
    jobs.read(0, 0, 0)
    jobs.hold(pending)
    erased.note("ann", ERASED_AT)
    before = dropped()
    await senders._deliver(pending, nothing)
    assert dropped() == before + 1
