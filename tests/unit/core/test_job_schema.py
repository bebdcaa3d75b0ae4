"""The published email job schema (streams/schemas/email-job.schema.json) against the jobs
the processor writes and what the deliverer reads: every job of every shipped flow, with
and without an experiment variant or a send moved by quiet hours, is valid and names
exactly the schema's fields; a job the schema refuses for a field the deliverer reads,
the deliverer refuses too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from app.settings import Settings
from streams.core.errors import InvalidJob
from streams.core.experiments import load_experiments
from streams.core.governance import GovernancePolicy, QuietHours
from streams.core.schemas import schema
from streams.delivery.messages import REQUIRED_TEXT, parse_job
from tests.documented import ROOT, fenced_json
from tests.factories import BASE_TS, event_doc, item
from tests.unit.core.support import Store, processor, record, signup

JOB_SCHEMA = schema("email-job")
VALIDATOR = Draft202012Validator(JOB_SCHEMA)
HOUR = 3_600_000
DAY = 24 * HOUR


def shipped_flow_jobs() -> list[dict[str, Any]]:
    """A week and a lapse of traffic through the shipped flows and experiments: the welcome
    series (both branches), cart reminders, a win-back, with quiet hours moving some sends."""
    now = [BASE_TS]
    quiet = GovernancePolicy(cap_24h=100, cap_7d=100, quiet_hours=QuietHours(21, 8))
    batches = processor(governance=quiet, clock_ms=lambda: now[0])
    settings = Settings()
    batches.experiments = load_experiments(settings.experiments_file, set(batches.template_versions))
    store, timers, jobs, offset = Store(), set[tuple[int, str]](), list[dict[str, Any]](), 0

    def keep(result: Any) -> None:
        store.save(result)
        timers.difference_update(result.changes.timer_removals.get(0, []))
        timers.update(result.changes.timer_additions.get(0, []))
        jobs.extend(result.outputs.jobs)

    def send(*docs: dict[str, Any]) -> None:
        nonlocal offset
        keep(batches.process({0: [record(offset + n, doc) for n, doc in enumerate(docs)]}, store.load))
        offset += len(docs)

    def advance(millis: int) -> None:
        now[0] += millis
        while due := sorted(entry for entry in timers if entry[0] <= now[0]):
            keep(batches.on_clock({0: due}, store.load))

    users = [f"u{n}" for n in range(12)]
    send(*(signup(user, timezone="America/New_York" if n % 2 else "Europe/London") for n, user in enumerate(users)))
    send(*(event_doc("page_view", user, ts=BASE_TS + DAY) for user in users[:6]))
    send(*(event_doc("cart_add", user, ts=BASE_TS + DAY, cart_id=f"c-{user}", item=item()) for user in users[::3]))
    advance(2 * DAY + HOUR)
    advance(4 * DAY)
    advance(40 * DAY)
    return jobs


JOBS = shipped_flow_jobs()


def test_the_traffic_reaches_every_template_experiment_and_a_quiet_hours_delay() -> None:
    assert {job["template"] for job in JOBS} == {
        "welcome",
        "welcome_browsed",
        "welcome_discover",
        "welcome_picks",
        "cart_reminder",
        "winback",
    }
    assert {job["experiment"] for job in JOBS} == {None, "welcome_preheader", "winback_subject"}
    assert any(job["send_at"] != job["created_at"] for job in JOBS)


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job['flow']}-{job['step']}-{job['user_id']}")
def test_every_job_the_processor_writes_is_valid_and_names_the_schemas_fields(job: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(job)]
    assert errors == []
    assert set(job) == set(JOB_SCHEMA["properties"]) == set(JOB_SCHEMA["required"])
    assert parse_job(orjson.dumps(job)).job_id == job["job_id"]


@pytest.mark.parametrize(
    ("field", "bad"),
    [(name, value) for name in REQUIRED_TEXT for value in ("", None, 7)]
    + [("to", "nobody"), ("send_at", "tomorrow"), ("send_at", "2026-11-28T08:00:00")],
)
def test_a_job_the_deliverer_refuses_the_schema_refuses(field: str, bad: Any) -> None:
    job = {**JOBS[0], field: bad}
    with pytest.raises(InvalidJob):
        parse_job(orjson.dumps(job))
    assert not VALIDATOR.is_valid(job)


@pytest.mark.parametrize(
    ("path", "heading"),
    [(ROOT / "README.md", "### Email jobs"), (ROOT / "docs/contracts.md", "## Email job contract")],
    ids=["README.md", "contracts.md"],
)
def test_the_documented_job_examples_are_valid_and_the_deliverer_reads_them(path: Path, heading: str) -> None:
    jobs = fenced_json(path, heading)
    assert jobs, f"no example job under {heading!r} in {path.name}"
    for job in jobs:
        assert list(VALIDATOR.iter_errors(job)) == []
        assert set(job) == set(JOB_SCHEMA["properties"])
        assert parse_job(orjson.dumps(job)).job_id == job["job_id"]
