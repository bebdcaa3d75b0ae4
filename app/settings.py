"""One frozen settings object, built once at start-up from `TIDEMAIL_*` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streams.core.errors import ConfigError
from streams.core.governance import GovernancePolicy, QuietHours, parse_max_age
from streams.delivery.config import DeliveryConfig, Sender, SmtpConfig
from streams.ingest.config import IngestConfig

SMTP_TLS_MODES = ("none", "starttls", "tls")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
ENVIRONMENTS = ("development", "production")
# An address for List-Unsubscribe's mailto, plain enough to need no percent-encoding (RFC 6068).
MAILTO_ADDRESS = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DEVELOPMENT_UNSUBSCRIBE_SECRET = "dev-only-unsubscribe-secret-change-me"
# Shortest unsubscribe secret and bearer token accepted outside development.
MIN_SECRET_CHARS = 16
# TIDEMAIL_LOG_LEVEL's accepted spellings (Faust's short ones among them) and the level each means.
LOG_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "crit": "CRITICAL",
    "critical": "CRITICAL",
}


@dataclass(frozen=True, slots=True)
class Secret:
    """A setting that must not appear in logs or reprs."""

    _value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return self._value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Tidemail process can be configured with; defaults suit a local run."""

    app_id: str = "tidemail"
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "tidemail.events"
    jobs_topic: str = "tidemail.email-jobs"
    dead_letter_topic: str = "tidemail.dead-letter"
    # One record per erased user, keyed by user id, for downstream systems (and the deliverer) to follow.
    erasures_topic: str = "tidemail.erasures"
    partitions: int = 8
    kafka_session_timeout_s: float = 10.0
    # How long a process starting waits for the broker before it gives up (a broker restart).
    kafka_startup_wait_s: float = 60.0
    replication_factor: int = 1
    data_dir: Path = Path(".cache/worker")
    web_port: int = 6066
    # Where every HTTP server of a process listens (the worker's API, the trainer's and the
    # deliverer's metrics): this machine only, unless a deployment asks for more.
    web_host: str = "127.0.0.1"
    # How the other workers reach this worker's API (they forward requests about its users to
    # it); empty for http://TIDEMAIL_WEB_HOST:TIDEMAIL_WEB_PORT, or this machine's host name
    # in place of 0.0.0.0.
    canonical_url: str = ""
    max_event_bytes: int = 65_536
    batch_max_records: int = 5_000
    batch_timeout_ms: int = 50
    # Decoded states take about 6.3 KB each in memory (their stored form ~0.8 KB); a miss
    # costs a RocksDB read and a decode (~15 us).
    state_cache_users: int = 30_000
    dedupe_window: int = 32
    interest_half_life_days: float = 14.0
    daily_history_days: int = 35
    recent_purchases_kept: int = 10
    # RocksDB memory of a worker: one block cache and one budget for all memtables, shared by
    # every partition database it opens; a memtable's size.
    rocksdb_block_cache_mb: int = 256
    rocksdb_memtables_mb: int = 128
    rocksdb_write_buffer_mb: int = 64
    templates_dir: Path = Path(__file__).resolve().parent.parent / "templates"
    segments_file: Path = Path(__file__).resolve().parent.parent / "streams" / "segments.yaml"
    segment_changes_topic: str = "tidemail.segment-changes"
    experiments_file: Path = Path(__file__).resolve().parent.parent / "streams" / "experiments.yaml"
    flows_file: Path = Path(__file__).resolve().parent.parent / "streams" / "flows.yaml"
    # Governance: marketing emails per user per rolling day and week, and local quiet
    # hours (`21-8`; empty for none) in the user's `timezone` trait, else this zone.
    frequency_cap_24h: int = 2
    frequency_cap_7d: int = 7
    quiet_hours: str = "21-8"
    default_timezone: str = "UTC"
    # Marketing flows send only to users whose consent to the flow's list a `subscribe` event recorded.
    require_consent: bool = False
    # Events older than this on the worker's clock (`24h`, `7d`; empty for no limit) still
    # update state and segments but start no flow run: a backfill sends nothing.
    max_trigger_age: str = "24h"
    timer_interval_ms: int = 200
    # Due timer entries fired in one batch, over all of a worker's partitions.
    timer_batch_users: int = 5_000
    # GET /ready answers 503 while the worker's partitions are more records behind than this.
    ready_max_lag_records: int = 100_000
    # Lets POST /admin/clock move the worker's clock forward: for tests and demos only.
    allow_clock_control: bool = False
    brand: str = "Tidemail Shop"
    shop_url: str = "https://shop.example.com"
    unsubscribe_secret: Secret = Secret(DEVELOPMENT_UNSUBSCRIBE_SECRET)
    # `development` or `production`: in production the worker refuses development secrets
    # and missing tokens at start-up, and every process refuses clock control.
    env: str = "development"
    # Bearer tokens of the worker's API, comma-separated (several, to rotate them); the admin
    # routes (/admin/*, /stats/reset, erase) take only admin tokens, which open every route.
    api_tokens: Secret = Secret("")
    admin_tokens: Secret = Secret("")
    company_postal_address: str = "Tidemail, 1 Harbour Street, Portsmouth"
    unsubscribe_base_url: str = "http://127.0.0.1:6066/unsubscribe"
    log_level: str = "info"
    # Recommendations: every interaction goes to a one-partition topic that the elected
    # trainer reads; its item-model snapshots go to a compacted topic every worker reads.
    interactions_topic: str = "tidemail.interactions"
    item_model_topic: str = "tidemail.item-model"
    # The shop's catalogue, keyed by sku: {"name", "category", "price", "available"}.
    catalog_topic: str = "tidemail.catalog"
    reco_snapshot_interval_s: float = 5.0
    reco_catalog_capacity: int = 5_000
    # Where `tidemail trainer` serves its Prometheus metrics (0: nowhere).
    trainer_metrics_port: int = 6068
    reco_weight_page_view: float = 1.0
    reco_weight_click: float = 2.0
    reco_weight_cart_add: float = 4.0
    reco_weight_purchase: float = 8.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    prediction_cache_ttl_s: int = 600
    # Delivery (`tidemail deliver` sends jobs over SMTP at most once; `tidemail smtp-sink`
    # receives them locally). Claims live in Redis at `redis_url`.
    deliveries_topic: str = "tidemail.deliveries"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_tls: str = "none"  # none, starttls or tls
    smtp_username: str = ""
    smtp_password: Secret = Secret("")
    smtp_timeout_s: float = 30.0
    mail_from_address: str = "hello@shop.example.com"
    mail_from_name: str = "Tidemail Shop"
    # An address listed as `<mailto:...>` beside the link in List-Unsubscribe; empty for none.
    unsubscribe_mailto: str = ""
    delivery_concurrency: int = 8
    delivery_max_attempts: int = 5
    delivery_retry_base_ms: int = 2_000
    delivery_retry_max_ms: int = 300_000
    # Jobs read but not finished (most waiting for `send_at`); fetching pauses above it.
    delivery_max_pending: int = 50_000
    delivery_claim_ttl_s: int = 30 * 86_400
    deliverer_metrics_port: int = 6069
    # `tidemail ingest`: Segment's HTTP tracking API. Write keys are comma-separated (several,
    # to rotate them); with none, every request is refused.
    write_keys: Secret = Secret("")
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 6070
    smtp_sink_dir: Path = Path(".cache/smtp-sink")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `TIDEMAIL_<FIELD>` variables, converting each to its field's type."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"TIDEMAIL_{field.name.upper()}")
            if raw is not None:
                values[field.name] = _convert(field.name, field.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations that would fail later in a less obvious way."""
        if self.partitions < 1:
            raise ConfigError(f"TIDEMAIL_PARTITIONS must be at least 1; got {self.partitions}")
        if self.batch_max_records < 1:
            raise ConfigError(f"TIDEMAIL_BATCH_MAX_RECORDS must be at least 1; got {self.batch_max_records}")
        if min(self.frequency_cap_24h, self.frequency_cap_7d) < 1:
            raise ConfigError("TIDEMAIL_FREQUENCY_CAP_24H and TIDEMAIL_FREQUENCY_CAP_7D must be at least 1")
        QuietHours.parse(self.quiet_hours)
        parse_max_age(self.max_trigger_age)
        if self.unsubscribe_mailto and not MAILTO_ADDRESS.match(self.unsubscribe_mailto):
            address = self.unsubscribe_mailto
            raise ConfigError(f"TIDEMAIL_UNSUBSCRIBE_MAILTO must be an address like unsub@example.com; got {address!r}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"TIDEMAIL_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; got {self.log_level!r}")
        if self.max_event_bytes < 256:
            raise ConfigError(f"TIDEMAIL_MAX_EVENT_BYTES must be at least 256; got {self.max_event_bytes}")
        if self.smtp_tls not in SMTP_TLS_MODES:
            raise ConfigError(f"TIDEMAIL_SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}; got {self.smtp_tls!r}")
        if self.delivery_concurrency < 1 or self.delivery_max_attempts < 1:
            raise ConfigError("TIDEMAIL_DELIVERY_CONCURRENCY and TIDEMAIL_DELIVERY_MAX_ATTEMPTS must be at least 1")
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"TIDEMAIL_ENV must be one of {', '.join(ENVIRONMENTS)}; got {self.env!r}")
        if self.env != "development" and self.allow_clock_control:
            raise ConfigError(f"TIDEMAIL_ALLOW_CLOCK_CONTROL must be false with TIDEMAIL_ENV={self.env}")

    def check_api_secrets(self) -> None:
        """Outside development, refuse to serve the API with a development unsubscribe secret
        (anyone could forge links) or without API and admin tokens (no one could call it)."""
        if self.env == "development":
            return
        problems = []
        secret = self.unsubscribe_secret.reveal()
        if secret == DEVELOPMENT_UNSUBSCRIBE_SECRET or len(secret) < MIN_SECRET_CHARS:
            problems.append(f"TIDEMAIL_UNSUBSCRIBE_SECRET must be your own, of at least {MIN_SECRET_CHARS} characters")
        for name, tokens in (("API", self.api_bearer_tokens), ("ADMIN", self.admin_bearer_tokens)):
            if not tokens or min(map(len, tokens)) < MIN_SECRET_CHARS:
                problems.append(f"TIDEMAIL_{name}_TOKENS must list tokens of at least {MIN_SECRET_CHARS} characters")
        if problems:
            raise ConfigError(f"TIDEMAIL_ENV={self.env} refuses to start: {'; '.join(problems)}")

    @property
    def api_bearer_tokens(self) -> tuple[str, ...]:
        return _tokens(self.api_tokens)

    @property
    def admin_bearer_tokens(self) -> tuple[str, ...]:
        return _tokens(self.admin_tokens)

    @property
    def hot_path_topics(self) -> list[str]:
        """The topics partitioned like the `users` table: input and every output."""
        return [
            self.events_topic,
            self.jobs_topic,
            self.dead_letter_topic,
            self.segment_changes_topic,
            self.erasures_topic,
        ]

    @property
    def logging_level(self) -> str:
        """The level as Python's logging (and Faust's `--loglevel`) names it: `crit` is `CRITICAL`."""
        return LOG_LEVELS[self.log_level.lower()]

    @property
    def faust_log_level(self) -> str:
        """The same level in the spelling Faust's `--loglevel` takes (crit, error, warn, info, debug)."""
        return {"CRITICAL": "crit", "WARNING": "warn"}.get(self.logging_level, self.logging_level.lower())

    @property
    def reco_weights(self) -> dict[str, float]:
        """Implicit feedback per event type: a view counts least, a purchase most."""
        return {
            "page_view": self.reco_weight_page_view,
            "click": self.reco_weight_click,
            "cart_add": self.reco_weight_cart_add,
            "purchase": self.reco_weight_purchase,
        }

    @property
    def governance(self) -> GovernancePolicy:
        return GovernancePolicy(
            self.frequency_cap_24h,
            self.frequency_cap_7d,
            QuietHours.parse(self.quiet_hours),
            self.default_timezone,
            parse_max_age(self.max_trigger_age),
            self.require_consent,
        )

    @property
    def delivery(self) -> DeliveryConfig:
        """What `tidemail deliver` reads."""
        smtp = SmtpConfig(
            self.smtp_host,
            self.smtp_port,
            self.smtp_tls,
            self.smtp_username,
            self.smtp_password.reveal(),
            self.smtp_timeout_s,
        )
        return DeliveryConfig(
            app_id=self.app_id,
            kafka_bootstrap=self.kafka_bootstrap,
            kafka_session_timeout_s=self.kafka_session_timeout_s,
            redis_url=self.redis_url,
            jobs_topic=self.jobs_topic,
            deliveries_topic=self.deliveries_topic,
            erasures_topic=self.erasures_topic,
            events_topic=self.events_topic,
            dead_letter_topic=self.dead_letter_topic,
            sender=Sender(self.mail_from_address, self.mail_from_name, self.unsubscribe_mailto),
            smtp=smtp,
            concurrency=self.delivery_concurrency,
            max_attempts=self.delivery_max_attempts,
            retry_base_ms=self.delivery_retry_base_ms,
            retry_max_ms=self.delivery_retry_max_ms,
            max_pending=self.delivery_max_pending,
            claim_ttl_s=self.delivery_claim_ttl_s,
            allow_clock_control=self.allow_clock_control,
        )

    @property
    def ingest(self) -> IngestConfig:
        """What `tidemail ingest` reads."""
        return IngestConfig(
            kafka_bootstrap=self.kafka_bootstrap,
            events_topic=self.events_topic,
            write_keys=_tokens(self.write_keys),
            host=self.ingest_host,
            port=self.ingest_port,
        )

    @property
    def kafka_url(self) -> str:
        return f"kafka://{self.kafka_bootstrap}"


def _tokens(secret: Secret) -> tuple[str, ...]:
    return tuple(token for token in (part.strip() for part in secret.reveal().split(",")) if token)


def _convert(name: str, type_name: Any, raw: str) -> Any:
    # Annotations are strings under `from __future__ import annotations`.
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as e:
        expected = "a whole number" if kind == "int" else "a number"
        raise ConfigError(f"TIDEMAIL_{name.upper()} must be {expected}; got {raw!r}") from e
    if kind == "bool":
        if raw.lower() not in BOOLEANS:
            raise ConfigError(f"TIDEMAIL_{name.upper()} must be true or false; got {raw!r}")
        return BOOLEANS[raw.lower()]
    if kind == "Path":
        return Path(raw)
    if kind == "Secret":
        return Secret(raw)
    return raw
