"""Withdrawals at the deliverer: a user's scheduled emails of a list they left are not sent.

The worker publishes a withdrawal record to the jobs topic, in the user's partition, after
every job of theirs it published before the unsubscribe (`streams/core/withdrawal.py`), so
the jobs it withdraws are the ones this deliverer holds when it reads the record, on a
restart too. Nothing is published about a withdrawn job: a restart reads it again, then the
withdrawal again.
"""

from __future__ import annotations

import logging
from typing import Final

from streams import metrics
from streams.core.withdrawal import withdraws
from streams.delivery.due import DueJobs
from streams.delivery.messages import string_fields
from streams.delivery.pending import PendingJobs

log = logging.getLogger(__name__)

WITHDRAWN: Final = "withdrawn"


def read_withdrawal(value: bytes | None) -> tuple[str, str]:
    """The user and the list of a withdrawal record; raise `InvalidJob` naming what is wrong."""
    user_id, list_name = string_fields(value, ("user_id", "list"), "withdrawal record")
    return user_id, list_name


def withdraw(user_id: str, list_name: str, due: DueJobs, jobs: PendingJobs) -> int:
    """Finish, unsent, the jobs of `user_id` waiting for their `send_at` that leaving
    `list_name` withdraws; return how many."""
    withdrawn = due.remove_where(lambda p: p.job.user_id == user_id and withdraws(list_name, p.job.list_name))
    for pending in withdrawn:
        log.info("job %s: its user left the %r list before it was due; not sent", pending.job.job_id, list_name)
        metrics.DELIVERIES.labels(WITHDRAWN).inc()
        jobs.finished(pending)
    return len(withdrawn)
