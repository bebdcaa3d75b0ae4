"""Delivery governance, decided just before a job is emitted: who must not get an email,
how many marketing emails a user may get, and at what local hours they may arrive; and
how old a trigger may be and still start a flow run (the flow engine applies that one)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.send_time import next_local_hour, zone
from streams.core.durations import parse_duration
from streams.core.errors import ConfigError
from streams.core.flow_engine import JobRequest
from streams.core.state import UserState

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours `[start, end)` in which nothing arrives; may wrap midnight (21 to 8)."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """`"21-8"` from settings; empty means no quiet hours."""
        if not text.strip():
            return None
        try:
            start, end = (int(part) for part in text.split("-"))
        except ValueError as e:
            raise ConfigError(
                f"TIDEMAIL_QUIET_HOURS must look like `21-8` (local hours) or be empty; got {text!r}"
            ) from e
        if not (0 <= start < 24 and 0 <= end < 24) or start == end:
            raise ConfigError(f"TIDEMAIL_QUIET_HOURS needs two different hours from 0 to 23; got {text!r}")
        return cls(start, end)

    def covers(self, hour: int) -> bool:
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end

    def next_allowed(self, at_ms: int, timezone: str | None, best_hour: Callable[[], int | None]) -> int:
        """`at_ms` itself when allowed; otherwise when the quiet hours end, or later that day
        at the user's best hour when that falls between the end and the next start."""
        local = datetime.fromtimestamp(at_ms / 1000, tz=zone(timezone))
        if not self.covers(local.hour):
            return at_ms
        end = local.replace(hour=self.end, minute=0, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        chosen = end
        hour = best_hour()
        if hour is not None and hour > self.end and not self.covers(hour):
            chosen = end.replace(hour=hour)
        # Re-localise after the arithmetic: a daylight-saving change in between shifts the wall clock.
        chosen = chosen.replace(tzinfo=None).replace(tzinfo=zone(timezone))
        return int(chosen.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class GovernancePolicy:
    cap_24h: int
    cap_7d: int
    quiet_hours: QuietHours | None
    default_timezone: str = "UTC"
    # A trigger (event or segment entry) older than this on the worker's clock starts no
    # flow run (`stale_trigger`); None for no limit.
    max_trigger_age_ms: int | None = None
    # Marketing email only to users whose consent to the list a `subscribe` recorded (`no_consent`).
    require_consent: bool = False


def parse_max_age(text: str) -> int | None:
    """`"24h"` from settings in milliseconds; empty means no limit."""
    if not text.strip():
        return None
    return parse_duration(text.strip(), "TIDEMAIL_MAX_TRIGGER_AGE")


@dataclass(frozen=True, slots=True)
class Decision:
    """`allowed`, or why not (`unsubscribed`, `hard_bounced`, `no_consent`, `no_address`,
    `capped_24h`, `capped_7d`); when to send; and whether quiet hours moved it."""

    outcome: str
    send_at_ms: int
    # Whether quiet hours moved the send.
    delayed: bool = False
    # Whether the send waits for the user's best hour (`at: best_hour`).
    at_best_hour: bool = False

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"


def decide(
    state: UserState, request: JobRequest, policy: GovernancePolicy, best_hour: Callable[[], int | None]
) -> Decision:
    """What governance says about `request`; `best_hour` (the user's best local hour to
    receive email, if predicted) is asked only when the send step waits for it (`at:
    best_hour`) or quiet hours move the send. Quiet hours and caps apply at the instant chosen."""
    at = request.at_ms
    if state.is_unsubscribed(request.list_name):
        return Decision("unsubscribed", at)
    if state.hard_bounced_ms is not None:
        return Decision("hard_bounced", at)
    if policy.require_consent and request.category == "marketing" and not state.has_consent(request.list_name):
        return Decision("no_consent", at)
    if state.email is None:
        return Decision("no_address", at)
    timezone = state.traits.get("timezone") or policy.default_timezone
    best_hour = functools.cache(best_hour)
    send_at = at
    if request.best_hour_within_ms is not None and (hour := best_hour()) is not None:
        # No best hour in the window (a short one): the send goes at once.
        best = next_local_hour(hour, at, at + request.best_hour_within_ms, timezone)
        send_at = best if best is not None else at
    scheduled = send_at
    if policy.quiet_hours is not None:
        send_at = policy.quiet_hours.next_allowed(scheduled, timezone, best_hour)
    if request.category == "marketing":
        # Counted around the send instant, both ways: a send delayed by quiet hours may
        # sit after one that is decided later.
        if _sends_within(state.marketing_sends, send_at, DAY_MS) >= policy.cap_24h:
            return Decision("capped_24h", send_at)
        if _sends_within(state.marketing_sends, send_at, WEEK_MS) >= policy.cap_7d:
            return Decision("capped_7d", send_at)
    return Decision("allowed", send_at, delayed=send_at != scheduled, at_best_hour=scheduled != at)


def record_send(state: UserState, request: JobRequest, decision: Decision) -> None:
    """Count an allowed marketing email against the user's caps (replacing the list)."""
    if request.category == "marketing":
        sends = state.marketing_sends
        state.marketing_sends = sorted(t for t in [*sends, decision.send_at_ms] if t > decision.send_at_ms - WEEK_MS)


def _sends_within(sends: list[int], at_ms: int, span_ms: int) -> int:
    return sum(1 for t in sends if abs(t - at_ms) < span_ms)
