from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import aiosmtplib
import orjson
import pytest

from streams.core.errors import InvalidJob
from streams.core.events import validate_event
from streams.delivery.claims import read_existing
from streams.delivery.config import Sender
from streams.delivery.messages import (
    Job,
    Verdict,
    backoff_ms,
    bounce_event,
    build_message,
    classify,
    outcome_record,
    parse_job,
    parse_time,
)

SEND_AT = "2026-11-28T08:00:00.000Z"
SEND_AT_MS = 1_795_852_800_000


def job_doc(**overrides: Any) -> dict[str, Any]:
    return {
        "job_id": "5b1f0c9e-0000-5000-8000-000000000001",
        "user_id": "ann",
        "to": "ann@example.com",
        "flow": "welcome",
        "step": 1,
        "list": "marketing",
        "template": "welcome",
        "template_version": "abc",
        "subject": "Welcome, Änn!",
        "preheader": "Good to have you",
        "html": "<html><body><p>Hi Änn</p></body></html>",
        "text": "Hi Änn",
        "unsubscribe_url": "https://shop.example.com/unsubscribe?token=t0k",
        "send_at": SEND_AT,
        "created_at": SEND_AT,
        "trigger_event_id": "e1",
        "experiment": None,
        "variant": None,
        **overrides,
    }


def test_a_job_parses_and_unknown_fields_are_ignored() -> None:
    job = parse_job(orjson.dumps(job_doc(new_field={"x": 1})))
    assert job.job_id == "5b1f0c9e-0000-5000-8000-000000000001"
    assert job.send_at_ms == SEND_AT_MS
    assert job.step == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "record has no value"),
        (b"{nope", "not valid JSON"),
        (b"[1]", "job must be a JSON object; got list"),
        (orjson.dumps(job_doc(job_id="")), "`job_id` must be a non-empty string"),
        (orjson.dumps(job_doc(to="nobody")), "`to` must be an email address"),
        (orjson.dumps(job_doc(send_at="tomorrow")), "`send_at` must be RFC 3339"),
        (orjson.dumps(job_doc(send_at="2026-11-28T08:00:00")), "`send_at` must carry a UTC offset"),
        (orjson.dumps({k: v for k, v in job_doc().items() if k != "html"}), "`html` must be a non-empty string"),
    ],
)
def test_malformed_jobs_are_refused_with_the_reason(raw: bytes | None, message: str) -> None:
    with pytest.raises(InvalidJob, match=message.replace("[", r"\[")):
        parse_job(raw)


def test_send_at_accepts_offsets_and_milliseconds() -> None:
    assert parse_time(SEND_AT, "send_at") == SEND_AT_MS
    assert parse_time("2026-11-28T09:00:00.250+01:00", "send_at") == SEND_AT_MS + 250


def test_the_message_has_both_parts_and_the_delivery_headers() -> None:
    long_line = "<p>" + "x" * 5_000 + "</p>"
    job = parse_job(orjson.dumps(job_doc(html=f"<html><body><p>Hi Änn</p>{long_line}</body></html>")))
    raw = build_message(job, Sender("hello@shop.example.com", "Tidemail Shop"), SEND_AT_MS).as_bytes(policy=policy.SMTP)
    # Non-ASCII and long lines are encoded, so any relay takes it.
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == "Welcome, Änn!"
    assert message["From"] == "Tidemail Shop <hello@shop.example.com>"
    assert message["To"] == "ann@example.com"
    assert message["Message-ID"] == f"<{job.job_id}@shop.example.com>"
    assert message["X-Tidemail-Job-Id"] == job.job_id
    assert message["List-Unsubscribe"] == f"<{job.unsubscribe_url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}  # type: ignore[attr-defined]
    assert parts["text/plain"].strip() == "Hi Änn"
    assert "<p>Hi Änn</p>" in parts["text/html"]
    assert long_line in parts["text/html"]


@pytest.mark.parametrize(
    ("error", "phase", "verdict", "code"),
    [
        (aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "a@x"), "rcpt", Verdict.BOUNCE, 550),
        (aiosmtplib.SMTPRecipientRefused(553, "mailbox name invalid", "a@x"), "rcpt", Verdict.BOUNCE, 553),
        (aiosmtplib.SMTPRecipientRefused(451, "greylisted", "a@x"), "rcpt", Verdict.RETRY, 451),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(551, "not local", "a@x")]),
            "rcpt",
            Verdict.BOUNCE,
            551,
        ),
        (aiosmtplib.SMTPSenderRefused(421, "try later", "me@x"), "mail", Verdict.RETRY, 421),
        (aiosmtplib.SMTPSenderRefused(550, "sender rejected", "me@x"), "mail", Verdict.FAIL, 550),
        (aiosmtplib.SMTPDataError(552, "message too big"), "data", Verdict.FAIL, 552),
        (aiosmtplib.SMTPDataError(452, "insufficient storage"), "data", Verdict.RETRY, 452),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), "connect", Verdict.RETRY, 535),
        (aiosmtplib.SMTPConnectResponseError(554, "no service"), "connect", Verdict.RETRY, 554),
        (aiosmtplib.SMTPConnectError("refused"), "connect", Verdict.RETRY, None),
        (ConnectionRefusedError(111, "refused"), "connect", Verdict.RETRY, None),
        (aiosmtplib.SMTPServerDisconnected("gone"), "mail", Verdict.RETRY, None),
        (aiosmtplib.SMTPReadTimeoutError("slow"), "rcpt", Verdict.RETRY, None),
        (aiosmtplib.SMTPServerDisconnected("gone"), "data", Verdict.UNCERTAIN, None),
        (aiosmtplib.SMTPReadTimeoutError("slow"), "data", Verdict.UNCERTAIN, None),
        (UnicodeEncodeError("ascii", "ä", 0, 1, "no"), "rcpt", Verdict.FAIL, None),
    ],
)
def test_smtp_failures_are_classified(error: BaseException, phase: str, verdict: Verdict, code: int | None) -> None:
    failure = classify(error, phase)
    assert (failure.verdict, failure.code) == (verdict, code)
    assert failure.reason


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    assert [backoff_ms(n, 1_000, 10_000, lambda: 1.0) for n in range(1, 7)] == [
        1_000,
        2_000,
        4_000,
        8_000,
        10_000,
        10_000,
    ]
    assert [backoff_ms(n, 1_000, 10_000, lambda: 0.0) for n in range(1, 4)] == [500, 1_000, 2_000]


def test_a_bounce_outcome_becomes_a_valid_email_bounce_event() -> None:
    job: Job = parse_job(orjson.dumps(job_doc()))
    record = outcome_record(job, "bounced", 1, SEND_AT_MS + 5, 550, "550 5.1.1 no such user")
    assert record["at"] == "2026-11-28T08:00:00.005Z"
    event = validate_event(bounce_event(record), b"ann")
    assert event.event_id == f"bounce-{job.job_id}"
    assert event.timestamp_ms == SEND_AT_MS + 5
    assert event.properties == {"job_id": job.job_id, "bounce": "hard", "reason": "550 5.1.1 no such user"}


def test_a_claim_reads_back_as_claimed_or_as_its_outcome() -> None:
    assert read_existing(b"claimed:123").claimed_at_ms == 123
    assert read_existing(b'{"outcome":"sent"}').outcome == {"outcome": "sent"}


def test_a_subject_with_a_line_break_is_refused_not_injected() -> None:
    job = parse_job(orjson.dumps(job_doc(subject="Hi\r\nBcc: everyone@example.com")))
    with pytest.raises(ValueError, match="linefeed"):
        build_message(job, Sender("hello@shop.example.com", "Shop"), SEND_AT_MS)
