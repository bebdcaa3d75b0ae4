"""Delivery logic without I/O: the job contract as the deliverer reads it, the MIME message,
what an SMTP failure means, the retry schedule, and the records an outcome produces."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address, BaseHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate
from enum import Enum
from typing import Any, Final

import aiosmtplib
import orjson

from streams.core.errors import InvalidJob, shown
from streams.core.jobs import format_time
from streams.delivery.config import Sender

# Outcomes published to the deliveries topic. `duplicate` is only counted: see docs/delivery.md.
SENT: Final = "sent"
BOUNCED: Final = "bounced"
FAILED: Final = "failed"
UNCONFIRMED: Final = "unconfirmed"
DUPLICATE: Final = "duplicate"
INVALID: Final = "invalid"

REQUIRED_TEXT: Final = ("job_id", "user_id", "to", "flow", "subject", "html", "text", "unsubscribe_url", "send_at")
# SMTP's limit on a line, without its CRLF (RFC 5322 2.1.1).
MAX_LINE_OCTETS: Final = 998
# The job id ends up in the Message-ID, whose left part must be a dot-atom (RFC 5322 3.6.4).
_JOB_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
MAX_JOB_ID_CHARS: Final = 200
# An http(s) URL of printable ASCII without space, quote or angle brackets: it goes between
# the angle brackets of List-Unsubscribe as is, on a line of its own at most.
_UNSUBSCRIBE_URL = re.compile(r"^https?://[!#-;=?-~]+$")
MAX_UNSUBSCRIBE_URL_CHARS: Final = 900


@dataclass(frozen=True, slots=True)
class Job:
    """The fields of an email job that delivery uses; the rest of the record is ignored."""

    job_id: str
    user_id: str
    to: str
    flow: str
    step: Any
    subject: str
    html: str
    text: str
    unsubscribe_url: str
    send_at_ms: int
    # When the worker built it; a job built before its user was erased is dropped (`erasures`).
    created_at_ms: int | None = None
    # The list it is sent to, which an unsubscribe withdraws it from (`withdrawals`).
    list_name: str | None = None


def parse_job(raw: bytes | None) -> Job:
    """Decode one record of the jobs topic; raise `InvalidJob` naming the first problem."""
    if raw is None:
        raise InvalidJob("record has no value; expected a JSON email job")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidJob(f"record is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidJob(f"job must be a JSON object; got {type(doc).__name__}")
    for name in REQUIRED_TEXT:
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidJob(f"`{name}` must be a non-empty string; got {shown(value)}")
    if "@" not in doc["to"]:
        raise InvalidJob(f"`to` must be an email address; got {shown(doc['to'])}")
    if len(doc["job_id"]) > MAX_JOB_ID_CHARS or not _JOB_ID.match(doc["job_id"]):
        raise InvalidJob(
            f"`job_id` must be at most {MAX_JOB_ID_CHARS} letters, digits, dots or dashes (a UUID); "
            f"got {shown(doc['job_id'])}"
        )
    url = doc["unsubscribe_url"]
    if len(url) > MAX_UNSUBSCRIBE_URL_CHARS or not _UNSUBSCRIBE_URL.match(url):
        raise InvalidJob(
            f"`unsubscribe_url` must be an http(s) URL of at most {MAX_UNSUBSCRIBE_URL_CHARS} printable ASCII "
            f"characters without spaces, quotes or angle brackets; got {shown(url)}"
        )
    return Job(
        job_id=doc["job_id"],
        user_id=doc["user_id"],
        to=doc["to"],
        flow=doc["flow"],
        step=doc.get("step"),
        subject=doc["subject"],
        html=doc["html"],
        text=doc["text"],
        unsubscribe_url=doc["unsubscribe_url"],
        send_at_ms=parse_time(doc["send_at"], "send_at"),
        created_at_ms=parse_time(created, "created_at") if isinstance(created := doc.get("created_at"), str) else None,
        list_name=listed if isinstance(listed := doc.get("list"), str) else None,
    )


def string_fields(value: bytes | None, names: tuple[str, ...], record: str) -> list[str]:
    """The fields `names` of a JSON object record, each a string; raise `InvalidJob` saying
    what `record` (e.g. "erasure record") must be."""
    try:
        doc = orjson.loads(value or b"")
        fields = [doc[name] for name in names]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise InvalidJob(f"{record} must be a JSON object with {' and '.join(names)}: {e!r}") from e
    if not all(isinstance(field, str) for field in fields):
        raise InvalidJob(f"{record}'s {' and '.join(names)} must be strings; got {shown(doc)}")
    return fields


def parse_time(value: str, name: str) -> int:
    """RFC 3339 with an offset (the contract writes UTC, `...T08:00:00.000Z`) to epoch milliseconds."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise InvalidJob(f"`{name}` must be RFC 3339 like '2026-11-28T08:00:00.000Z'; got {shown(value)}") from e
    if parsed.tzinfo is None:
        raise InvalidJob(f"`{name}` must carry a UTC offset such as 'Z'; got {shown(value)}")
    return int(parsed.timestamp() * 1000)


def build_message(job: Job, sender: Sender, now_ms: int) -> EmailMessage:
    """The email as sent: text and HTML alternatives with one-click unsubscribe headers
    (RFC 2369 and 8058: `List-Unsubscribe: <mailto:...>, <https://...>`, the mailto only
    when one is configured).

    The Message-ID is derived from the job id, so a receiving system that somehow got the
    job twice can tell it is one email."""
    message = EmailMessage()
    message["Subject"] = job.subject
    message["From"] = Address(display_name=sender.name, addr_spec=sender.address)
    message["To"] = job.to
    message["Date"] = formatdate(now_ms / 1000, usegmt=True)
    message["Message-ID"] = f"<{job.job_id}@{sender.domain}>"
    uris = [f"mailto:{sender.unsubscribe_mailto}"] if sender.unsubscribe_mailto else []
    message["List-Unsubscribe"] = UriListHeader(
        "List-Unsubscribe", ", ".join(f"<{u}>" for u in [*uris, job.unsubscribe_url])
    )
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["X-Tidemail-Job-Id"] = job.job_id
    # Quoted-printable keeps both parts 7-bit with short lines, so any relay takes them
    # (rendered HTML can carry lines past SMTP's 998-octet limit).
    message.set_content(job.text, cte="quoted-printable")
    message.add_alternative(job.html, subtype="html", cte="quoted-printable")
    for part in message.iter_parts():
        # The email package gives the part it adds a MIME-Version of its own; RFC 2045
        # puts it at the top only.
        del part["MIME-Version"]
    return message


class UriListHeader(BaseHeader):
    """A header of angle-bracketed URIs (RFC 2369), written as given: folded only between
    the URIs, never into RFC 2047 encoded-words. The email package encodes any word too long
    for a 78-character line, and a List-Unsubscribe made of encoded-words is no URI to a
    mail client or a mailbox provider; a longer line is allowed, up to 998 octets."""

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["decoded"] = value
        # Nothing reads a parse tree: `fold` writes the value itself.
        kwds["parse_tree"] = None

    def fold(self, *, policy: Policy) -> str:
        one_line = f"{self.name}: {self}"
        if len(one_line) <= (policy.max_line_length or MAX_LINE_OCTETS):
            lines = [one_line]
        else:
            uris = str(self).split(", ")
            lines = [f"{self.name}: {uris[0]}", *(f" {uri}" for uri in uris[1:])]
            lines = [f"{line}," for line in lines[:-1]] + lines[-1:]
        if max(map(len, lines)) > MAX_LINE_OCTETS:
            raise ValueError(f"{self.name} has a URI too long for one line of {MAX_LINE_OCTETS} octets")
        return policy.linesep.join(lines) + policy.linesep


class Verdict(Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"  # nothing was accepted and a later attempt may succeed
    BOUNCE = "bounce"  # the recipient does not exist: suppress the address
    FAIL = "fail"  # nothing was accepted and trying again will not help
    UNCERTAIN = "uncertain"  # the server may have accepted it: sending again could duplicate


@dataclass(frozen=True, slots=True)
class Failure:
    verdict: Verdict
    code: int | None
    reason: str


def classify(error: BaseException, phase: str) -> Failure:
    """Classify an exception raised during `phase` (connect, mail, rcpt or data) of a transaction.

    4xx replies are transient, 5xx permanent (except while connecting), and a permanent
    refusal of the recipient is a hard bounce. A connection lost or timed out during DATA is uncertain: the message may
    have been received in full before the reply was lost."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, aiosmtplib.SMTPResponseException):
        reason = f"{error.code} {error.message}"
        # Refused before any envelope (greeting, TLS, login): the relay or our settings are
        # the problem, not this job, so it keeps its chances.
        if 400 <= error.code < 500 or phase == "connect":
            return Failure(Verdict.RETRY, error.code, reason)
        if isinstance(error, aiosmtplib.SMTPRecipientRefused) and 500 <= error.code < 600:
            return Failure(Verdict.BOUNCE, error.code, reason)
        return Failure(Verdict.FAIL, error.code, reason)
    reason = f"{phase}: {type(error).__name__}: {error}"
    if isinstance(error, ConnectionError | TimeoutError | OSError):
        return Failure(Verdict.UNCERTAIN if phase == "data" else Verdict.RETRY, None, reason)
    return Failure(Verdict.FAIL, None, reason)


def backoff_ms(attempt: int, base_ms: int, max_ms: int, rand: Callable[[], float] = random.random) -> int:
    """Delay before attempt `attempt + 1`: exponential from `base_ms`, capped at `max_ms`, with
    the upper half jittered so that jobs failing together do not retry together."""
    ceiling = min(max_ms, base_ms * 2 ** (attempt - 1))
    return int(ceiling / 2 + rand() * ceiling / 2)


def outcome_record(
    job: Job, outcome: str, attempts: int, at_ms: int, smtp_code: int | None, reason: str | None
) -> dict[str, Any]:
    """One record of the deliveries topic."""
    return {
        "job_id": job.job_id,
        "user_id": job.user_id,
        "flow": job.flow,
        "step": job.step,
        "outcome": outcome,
        "attempts": attempts,
        "at": format_time(at_ms),
        "smtp_code": smtp_code,
        "reason": reason,
    }


def bounce_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """The `email_bounce` event that makes the worker suppress a hard-bounced address, from
    the `bounced` outcome record (the same one each time: its id dedupes a republished one)."""
    return {
        "event_id": f"bounce-{record['job_id']}",
        "user_id": record["user_id"],
        "type": "email_bounce",
        "timestamp": parse_time(record["at"], "at"),
        "properties": {"job_id": record["job_id"], "bounce": "hard", "reason": record["reason"]},
    }
