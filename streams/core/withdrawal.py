"""Withdrawing emails already scheduled when their user unsubscribes.

Governance decides at the trigger, but a job can wait hours for its `send_at` (quiet hours,
the user's best hour, a flow's wait): an unsubscribe in between must stop it. The worker
publishes a withdrawal record to the jobs topic for each list an `unsubscribe` event
removes the user from, keyed and partitioned like the user's jobs and after them, so a
deliverer reads it after every job it withdraws, on a restart too: it drops the user's jobs
of that list (every list for `all`) that it holds unsent. A job published after the
withdrawal (the user subscribed again) is not one it has read yet, and goes out.

The record carries a `tidemail.kind: withdrawal` header; consumers of email jobs that do not
know it skip records with that header (see docs/contracts.md, Email jobs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from streams.core.batch import Withdrawal
from streams.core.jobs import format_time
from streams.core.state import ALL_LISTS, DEFAULT_LIST, UserState

KIND_HEADER: Final = "tidemail.kind"
WITHDRAWAL: Final = "withdrawal"


def is_withdrawal(headers: Iterable[tuple[str, bytes]]) -> bool:
    """Whether a jobs-topic record with these headers is a withdrawal, not an email job."""
    return any(key == KIND_HEADER and value == WITHDRAWAL.encode() for key, value in headers)


def lists_left(before: UserState, after: UserState) -> list[str]:
    """The lists `after` is unsubscribed from that `before` was not."""
    return [name for name in after.unsubscribed_lists if name not in before.unsubscribed_lists]


def withdrawal_id(withdrawal: Withdrawal) -> str:
    """From the unsubscribe event's place and the list: a replay publishes nothing new."""
    return f"{withdrawal.record.partition}:{withdrawal.record.offset}:withdrawal:{withdrawal.list_name}"


def withdrawal_record(withdrawal: Withdrawal) -> dict[str, Any]:
    """What the jobs topic carries for it (streams/schemas/email-job-withdrawal.schema.json)."""
    return {
        "withdrawal_id": withdrawal_id(withdrawal),
        "user_id": withdrawal.user_id,
        "list": withdrawal.list_name,
        "event_id": withdrawal.event_id,
        "processed_at": format_time(withdrawal.processed_ms),
    }


def withdraws(list_left: str, job_list: str | None) -> bool:
    """Whether leaving `list_left` withdraws a job sent to `job_list` (the default list when
    the job names none), as governance would have refused it."""
    return list_left in (ALL_LISTS, job_list or DEFAULT_LIST)
