from __future__ import annotations

import orjson

from streams.delivery.ledger import (
    CLAIMED,
    FINISHED,
    RELEASED,
    Ledger,
    claim_record,
    read_record,
    release_record,
)
from streams.delivery.messages import parse_job
from tests.unit.delivery.test_messages import job_doc


def test_a_jobs_last_record_on_the_topic_is_its_state() -> None:
    ledger = Ledger()
    records = [
        ("a", CLAIMED, 100),
        ("b", CLAIMED, 110),
        ("a", RELEASED, 120),
        ("c", CLAIMED, 130),
        ("a", CLAIMED, 140),
        ("a", "sent", 150),
        ("c", "unconfirmed", 160),
    ]
    assert ledger.load(0, ledger.generation(0), records)
    a, b, c = (ledger.get(0, job_id) for job_id in "abc")
    assert a is not None and (a.state, a.first_ms, a.at_ms) == (FINISHED, 100, 150)
    assert b is not None and (b.state, b.at_ms) == (CLAIMED, 110)
    assert c is not None and c.state == FINISHED
    assert (ledger.get(0, "d"), ledger.get(1, "a"), len(ledger)) == (None, None, 3)


def test_records_of_partitions_not_loaded_are_ignored_and_a_let_go_partition_is_not_installed() -> None:
    ledger = Ledger()
    ledger.apply(3, "a", CLAIMED, 100)
    assert not ledger.loaded(3)
    generation = ledger.generation(3)
    # The partition was revoked while its records were being read.
    ledger.forget({3})
    assert not ledger.load(3, generation, [("a", CLAIMED, 100)])
    assert not ledger.loaded(3)
    assert ledger.load(3, ledger.generation(3), [])
    assert not ledger.load(3, ledger.generation(3), [("a", CLAIMED, 100)])  # once only
    assert ledger.get(3, "a") is None


def test_pruning_forgets_jobs_first_recorded_before_the_cutoff_in_order() -> None:
    ledger = Ledger()
    ledger.load(0, 0, [("a", CLAIMED, 100), ("b", CLAIMED, 200), ("a", "sent", 300), ("c", CLAIMED, 400)])
    assert ledger.prune(0, 250) == 2
    assert (ledger.get(0, "a"), ledger.get(0, "b")) == (None, None)
    assert ledger.get(0, "c") is not None
    assert (ledger.prune(0, 250), ledger.prune(1, 1_000)) == (0, 0)


def test_claim_and_release_records_are_deliveries_records_the_ledger_reads_back() -> None:
    job = parse_job(orjson.dumps(job_doc(job_id="j1")))
    claim = claim_record(job, 2, 1_795_852_800_000)
    release = release_record(job, 2, 1_795_852_800_500, "451 greylisted")
    assert (claim["outcome"], claim["attempts"], claim["at"], claim["reason"]) == (
        CLAIMED,
        2,
        "2026-11-28T08:00:00.000Z",
        None,
    )
    assert (release["outcome"], release["reason"], release["user_id"]) == (RELEASED, "451 greylisted", "ann")
    assert read_record(orjson.dumps(claim)) == ("j1", CLAIMED)
    assert read_record(orjson.dumps(release)) == ("j1", RELEASED)


def test_records_that_are_not_deliveries_records_are_not_read() -> None:
    for value in (None, b"", b"{not json", b"[1]", b'{"job_id": 1, "outcome": "sent"}', b'{"job_id": "a"}'):
        assert read_record(value) is None
