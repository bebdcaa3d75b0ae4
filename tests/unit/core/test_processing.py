from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from streams.core.flow_engine import job_id
from streams.core.state import StatePolicy, UserState
from tests.factories import BASE_TS, event_doc
from tests.unit.core.support import Store, processor, record, signup


def test_signup_emits_one_deterministic_welcome_job() -> None:
    result = processor().process({0: [record(0, signup("u1"))]}, Store().load)
    [job] = result.outputs.jobs
    assert job["job_id"] == job_id("welcome", 1, "u1", "u1")
    assert job["to"] == "u1@example.com"
    assert job["subject"] == "Welcome to Shop, Ann!"
    assert job["trigger_event_id"] == "signup-u1-" + str(BASE_TS)
    assert {"html", "text", "preheader", "template_version", "send_at", "created_at"} <= set(job)
    assert result.changes.states[0]["u1"].applied_offset == 0


def test_bad_records_are_dead_lettered_and_neighbours_still_processed() -> None:
    batch = [
        record(0, event_doc("click", "u1", event_id="a")),
        record(1, b"{broken", key=b"u1"),
        record(2, event_doc("click", "u2"), key=b"not-u2"),
        record(3, b"x" * 5_000, key=b"u1"),
        record(4, event_doc("click", "u1", event_id="b")),
    ]
    result = processor().process({0: batch}, Store().load)
    assert [(d.record.offset, d.kind) for d in result.outputs.dead_letters] == [
        (1, "invalid_event"),
        (2, "invalid_event"),
        (3, "invalid_event"),
    ]
    assert "message is 5000 bytes; the limit is 4096" in result.outputs.dead_letters[2].reason
    assert result.changes.states[0]["u1"].counts == {"click": 2}
    assert result.changes.last_offsets == {0: 4}


def test_replayed_offsets_and_redelivered_ids_apply_once() -> None:
    store = Store()
    proc = processor()
    first = proc.process({0: [record(0, signup("u1")), record(1, event_doc("click", "u1"))]}, store.load)
    store.save(first)
    # A restart replays offsets 0..1, and the producer also retried the click at offset 2.
    again = proc.process(
        {0: [record(0, signup("u1")), record(1, event_doc("click", "u1")), record(2, event_doc("click", "u1"))]},
        store.load,
    )
    assert again.counts.skipped == {"replayed": 2, "duplicate": 1}
    assert again.outputs.jobs == []
    assert again.changes.states[0]["u1"].counts == {"signup": 1, "click": 1}
    assert again.changes.states[0]["u1"].applied_offset == 2


def test_second_signup_sends_no_second_welcome() -> None:
    result = processor().process(
        {0: [record(0, signup("u1")), record(1, {**signup("u1"), "event_id": "again"})]}, Store().load
    )
    assert len(result.outputs.jobs) == 1


def test_user_without_address_is_dead_lettered_but_state_kept() -> None:
    doc = event_doc("signup", "u1")
    result = processor().process({0: [record(0, doc)]}, Store().load)
    assert result.outputs.jobs == []
    [dead] = result.outputs.dead_letters
    assert dead.kind == "undeliverable" and "has no email address" in dead.reason
    assert result.counts.governance == {"no_address": 1}
    assert result.changes.states[0]["u1"].signed_up_ms == BASE_TS


def test_unsubscribed_user_gets_no_job() -> None:
    batch = [record(0, event_doc("unsubscribe", "u1")), record(1, signup("u1"))]
    result = processor().process({0: batch}, Store().load)
    assert result.outputs.jobs == []
    assert result.counts.governance == {"unsubscribed": 1}


def test_render_failure_is_dead_lettered_with_template_and_other_users_unaffected(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(Settings().templates_dir, templates)
    (templates / "emails/welcome/subject.txt.j2").write_text("{{ first_name | int // 0 }}")
    result = processor(templates).process(
        {0: [record(0, signup("u1")), record(1, event_doc("click", "u2"))]}, Store().load
    )
    [dead] = result.outputs.dead_letters
    assert dead.kind == "render_failed" and "template 'welcome'" in dead.reason
    assert set(result.changes.states[0]) == {"u1", "u2"}


def test_a_bug_in_processing_costs_one_event_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.core.processing as pipeline

    real_apply = pipeline.apply

    def flaky_apply(state: UserState, event: Any, policy: StatePolicy) -> UserState:
        if event.user_id == "u2":
            raise KeyError("boom")
        return real_apply(state, event, policy)

    monkeypatch.setattr(pipeline, "apply", flaky_apply)
    result = processor().process(
        {0: [record(0, event_doc("click", "u2")), record(1, event_doc("click", "u1"))]}, Store().load
    )
    [dead] = result.outputs.dead_letters
    assert dead.kind == "internal_error" and "KeyError" in dead.reason
    assert list(result.changes.states[0]) == ["u1"]
