"""Unsubscribes withdraw the scheduled emails of the lists they leave: what the worker
publishes for them, and which jobs a withdrawal covers."""

from __future__ import annotations

from jsonschema import Draft202012Validator, FormatChecker

from streams.core.schemas import schema
from streams.core.withdrawal import is_withdrawal, withdrawal_record, withdraws
from tests.documented import ROOT, fenced_json
from tests.factories import BASE_TS, event_doc
from tests.unit.core.support import Store, processor, record, signup


def test_an_unsubscribe_withdraws_each_list_it_leaves_once() -> None:
    batch = [
        record(0, signup("u1")),
        record(1, event_doc("unsubscribe", "u1", event_id="un-1", ts=BASE_TS + 10, list="marketing")),
        record(2, event_doc("unsubscribe", "u1", event_id="un-2", ts=BASE_TS + 20, list="marketing")),
        record(3, event_doc("unsubscribe", "u1", event_id="un-3", ts=BASE_TS + 30, list="all")),
        record(4, event_doc("subscribe", "u1", event_id="sub-1", ts=BASE_TS + 40, list="marketing")),
        # Older news than the subscribe already applied: it leaves nothing.
        record(5, event_doc("unsubscribe", "u1", event_id="un-4", ts=BASE_TS + 35, list="marketing")),
    ]
    result = processor().process({0: batch}, Store().load)
    assert [(w.record.offset, w.user_id, w.list_name, w.event_id) for w in result.outputs.withdrawals] == [
        (1, "u1", "marketing", "un-1"),
        (3, "u1", "all", "un-3"),
    ]
    doc = withdrawal_record(result.outputs.withdrawals[0])
    assert doc["withdrawal_id"] == "0:1:withdrawal:marketing"
    assert {"user_id": "u1", "list": "marketing", "event_id": "un-1"}.items() <= doc.items()


def test_a_withdrawal_covers_the_jobs_governance_would_have_refused() -> None:
    assert withdraws("marketing", "marketing")
    assert withdraws("marketing", None)  # a job that names no list goes to the default one
    assert withdraws("all", "tips")
    assert not withdraws("tips", "marketing")


def test_withdrawals_are_told_from_jobs_by_their_kind_header() -> None:
    assert is_withdrawal([("tidemail.id", b"0:1:withdrawal:all"), ("tidemail.kind", b"withdrawal")])
    assert not is_withdrawal([("tidemail.id", b"job-1")])
    assert not is_withdrawal([("tidemail.kind", b"invalid_job")])


def test_withdrawal_records_are_valid_against_their_published_schema() -> None:
    batch = [record(0, signup("u1")), record(1, event_doc("unsubscribe", "u1", list="all"))]
    [withdrawn] = processor().process({0: batch}, Store().load).outputs.withdrawals
    validator = Draft202012Validator(schema("email-job-withdrawal"), format_checker=FormatChecker())
    validator.validate(withdrawal_record(withdrawn))
    assert not validator.is_valid({**withdrawal_record(withdrawn), "withdrawal_id": "j1"})


def test_the_documented_withdrawal_is_valid_against_its_schema() -> None:
    [documented] = fenced_json(ROOT / "docs" / "contracts.md", "## Job withdrawals")
    Draft202012Validator(schema("email-job-withdrawal"), format_checker=FormatChecker()).validate(documented)
