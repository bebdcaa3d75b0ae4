from __future__ import annotations

import orjson

from streams.delivery.messages import parse_job
from streams.delivery.pending import Pending, PendingJobs
from tests.unit.delivery.test_messages import job_doc


def pending(partition: int, offset: int, job_id: str) -> Pending:
    return Pending(partition, offset, parse_job(orjson.dumps(job_doc(job_id=job_id))))


def test_a_partition_commits_up_to_its_earliest_unfinished_job() -> None:
    jobs = PendingJobs()
    first, second = pending(0, 10, "a"), pending(0, 11, "b")
    for p in (first, second):
        jobs.read(p.partition, p.offset, 1_000)
        jobs.hold(p)
    jobs.read(0, 12, 1_000)
    jobs.skipped(0, 12)
    assert (jobs.unfinished, jobs.position(0)) == (2, 10)
    jobs.finished(second)
    assert (jobs.unfinished, jobs.position(0), jobs.holds("b")) == (1, 10, False)
    jobs.finished(first)
    assert (jobs.unfinished, jobs.position(0)) == (0, 13)


def test_revoking_marks_held_jobs_and_lets_go_of_the_waiting_ones() -> None:
    jobs = PendingJobs()
    jobs.own({0, 1})
    waiting, in_flight, kept = pending(0, 1, "w"), pending(0, 2, "s"), pending(1, 1, "k")
    for p in (waiting, in_flight, kept):
        jobs.read(p.partition, p.offset, 1_000)
        jobs.hold(p)
    jobs.sending(in_flight)

    jobs.revoke({0}, waiting=[waiting])

    assert (waiting.revoked, in_flight.revoked, kept.revoked) == (True, True, False)
    assert not jobs.holds("w") and jobs.holds("s")
    assert jobs.sending_from({0}) and not jobs.sending_from({1})
    jobs.not_sending(in_flight)
    jobs.forget({0})
    assert not jobs.holds("s") and jobs.holds("k")
    assert (jobs.partitions, jobs.position(0), jobs.unfinished) == ({1}, None, 1)
