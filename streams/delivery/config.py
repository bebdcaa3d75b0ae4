"""What the deliverer is configured with: built once by the wiring from the process's settings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sender:
    """Who the email is from, and where else than the link an unsubscribe may go."""

    address: str
    name: str
    # An address listed as `<mailto:...>` before the link in List-Unsubscribe; empty for none.
    unsubscribe_mailto: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The relay every job is sent through."""

    host: str
    port: int
    tls: str  # none, starttls or tls
    username: str
    password: str = field(repr=False)
    timeout_s: float


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Everything `tidemail deliver` reads: its topics, Redis, the relay, and its limits."""

    app_id: str
    kafka_bootstrap: str
    kafka_session_timeout_s: float
    redis_url: str
    jobs_topic: str
    deliveries_topic: str
    # Users the worker erased: their jobs are dropped (`erasures`).
    erasures_topic: str
    events_topic: str
    dead_letter_topic: str
    sender: Sender
    smtp: SmtpConfig
    concurrency: int
    max_attempts: int
    retry_base_ms: int
    retry_max_ms: int
    # Jobs read but not finished (most waiting for `send_at`); fetching pauses above it.
    max_pending: int
    claim_ttl_s: int
    # Lets POST /admin/clock move the deliverer's clock forward: for tests and demos only.
    allow_clock_control: bool
