"""The worker's dashboard: throughput, lag, latency, what it emits, segments, timers, health."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from app.tools.dashboards.panels import DELIVERER, RATE, WORKER, Panel, dashboard, graph, quantiles, stat


def worker_dashboard() -> Dashboard:
    return dashboard(
        "tidemail-worker",
        "Tidemail worker",
        "Events in, state and emails out: the hot path of every worker (job tidemail-worker).",
        [
            ("Throughput and lag", _throughput()),
            ("Latency and batches", _latency()),
            ("What the worker emits", _outputs()),
            ("Segments and timers", _segments_and_timers()),
            ("Ownership and rebalances", _ownership()),
            ("Dependencies and the API", _dependencies()),
        ],
    )


def _throughput() -> list[Panel]:
    return [
        graph(
            "Events consumed",
            "Records read from the events topic and made durable, per worker.",
            "ops",
            (f"sum by (instance) (rate(tidemail_events_consumed_total{{{WORKER}}}[{RATE}]))", "{{instance}}"),
        ),
        graph(
            "Consumer lag",
            "Records of each events partition not yet read: the broker's end offset minus the worker's position.",
            "short",
            (f"sum by (topic, partition) (tidemail_consumer_lag_records{{{WORKER}}})", "partition {{partition}}"),
        ),
        graph(
            "Events applied by type",
            "Events applied to user state.",
            "ops",
            (f"sum by (type) (rate(tidemail_events_applied_total{{{WORKER}}}[{RATE}]))", "{{type}}"),
        ),
        graph(
            "Events skipped",
            "Duplicates by event_id, and replays below a user's offset after a restart.",
            "ops",
            (f"sum by (reason) (rate(tidemail_events_skipped_total{{{WORKER}}}[{RATE}]))", "{{reason}}"),
            (f"sum(rate(tidemail_events_rerouted_total{{{WORKER}}}[{RATE}]))", "rerouted to their key's partition"),
        ),
    ]


def _latency() -> list[Panel]:
    return [
        graph(
            "Event latency",
            "From an event's Kafka timestamp to its state being durable.",
            "s",
            *quantiles("tidemail_event_latency_seconds", WORKER),
        ),
        graph(
            "Batch duration",
            "Wall time to process and persist one batch of events or due timers.",
            "s",
            *quantiles("tidemail_batch_duration_seconds", WORKER),
        ),
        graph(
            "Transaction duration",
            "Each event partition's Kafka transaction, begun to committed: a batch is durable when its slowest "
            "partition's is, so this bounds how soon events become jobs.",
            "s",
            *quantiles("tidemail_transaction_duration_seconds", WORKER),
        ),
        graph(
            "Batch size",
            "Records per batch of events.",
            "short",
            *quantiles("tidemail_batch_size_records", WORKER),
        ),
        graph(
            "Batch failures",
            "Batches that could not be made durable (broker unreachable) and were retried from the checkpoint.",
            "ops",
            (f"sum by (instance) (rate(tidemail_batch_failures_total{{{WORKER}}}[{RATE}]))", "{{instance}}"),
        ),
    ]


def _outputs() -> list[Panel]:
    return [
        graph(
            "Dead letters by kind",
            "Records sent to the dead-letter topic, by every process (invalid_job is the deliverer's).",
            "ops",
            (f"sum by (kind) (rate(tidemail_dead_letters_total[{RATE}]))", "{{kind}}"),
        ),
        graph(
            "Email jobs by flow",
            "Jobs published to the jobs topic.",
            "ops",
            (f"sum by (flow) (rate(tidemail_jobs_emitted_total{{{WORKER}}}[{RATE}]))", "{{flow}}"),
        ),
        graph(
            "Flow transitions",
            "Runs entered, completed, ended by a goal, superseded, refused re-entry.",
            "ops",
            (
                f"sum by (flow, transition) (rate(tidemail_flow_transitions_total{{{WORKER}}}[{RATE}]))",
                "{{flow}} {{transition}}",
            ),
        ),
        graph(
            "Governance decisions",
            "What became of the emails flows asked for: allowed, capped, unsubscribed, quiet hours.",
            "ops",
            (f"sum by (decision) (rate(tidemail_governance_decisions_total{{{WORKER}}}[{RATE}]))", "{{decision}}"),
        ),
    ]


def _segments_and_timers() -> list[Panel]:
    return [
        graph(
            "Segment sizes",
            "Members of each segment, summed over the workers' partitions.",
            "short",
            (f"sum by (segment) (tidemail_segment_members{{{WORKER}}})", "{{segment}}"),
        ),
        graph(
            "Segment changes",
            "Entries and exits published to the segment-changes topic.",
            "ops",
            (
                f"sum by (segment, change) (rate(tidemail_segment_changes_total{{{WORKER}}}[{RATE}]))",
                "{{segment}} {{change}}",
            ),
        ),
        graph(
            "Timer lag",
            "How long after its due instant the latest timer of a clock batch fired (alert: p99 over 5 s).",
            "s",
            *quantiles("tidemail_timer_lateness_seconds", WORKER),
        ),
        graph(
            "Users re-evaluated by timers",
            "Users whose time conditions came due.",
            "ops",
            (f"sum(rate(tidemail_timer_users_total{{{WORKER}}}[{RATE}]))", "users"),
        ),
    ]


def _ownership() -> list[Panel]:
    return [
        stat("Workers up", "Workers Prometheus scrapes.", "short", (f"sum(up{{{WORKER}}})", "up")),
        stat(
            "Workers ready",
            "Workers whose GET /ready answers 200.",
            "short",
            (f"sum(tidemail_ready{{{WORKER}}})", "ready"),
        ),
        stat(
            "Partitions owned",
            "Events partitions the workers process, summed.",
            "short",
            (f"sum(tidemail_owned_partitions{{{WORKER}}})", "owned"),
        ),
        stat(
            "Rebalances",
            "Rebalances the workers went through in the dashboard's range.",
            "short",
            (f"sum(increase(tidemail_rebalances_total{{{WORKER}}}[$__range]))", "rebalances"),
        ),
        graph(
            "Rebalance duration",
            "Mean time from revocation to processing again, table recovery included.",
            "s",
            (
                f"sum(rate(tidemail_rebalance_duration_seconds_sum{{{WORKER}}}[{RATE}]))"
                f" / sum(rate(tidemail_rebalance_duration_seconds_count{{{WORKER}}}[{RATE}]))",
                "mean",
            ),
        ),
        graph(
            "Table recovery",
            "Changelog records each worker has still to read back into RocksDB.",
            "short",
            (
                f"sum by (instance, replica) (tidemail_recovery_remaining_records{{{WORKER}}})",
                "{{instance}} {{replica}}",
            ),
        ),
    ]


def _dependencies() -> list[Panel]:
    return [
        graph(
            "Redis errors",
            "Failed Redis calls: the prediction cache (worker) and delivery claims (deliverer).",
            "ops",
            (f"sum by (job, client) (rate(tidemail_redis_errors_total[{RATE}]))", "{{job}} {{client}}"),
            (
                f"sum(rate(tidemail_delivery_claims_unavailable_total{{{DELIVERER}}}[{RATE}]))",
                "delivery claims",
            ),
        ),
        graph(
            "API refusals and unsubscribes",
            "Requests refused (401, 403, 400) by reason, and unsubscribe link visits by outcome.",
            "ops",
            (f"sum by (reason) (rate(tidemail_api_refusals_total{{{WORKER}}}[{RATE}]))", "refused: {{reason}}"),
            (
                f"sum by (outcome) (rate(tidemail_unsubscribe_requests_total{{{WORKER}}}[{RATE}]))",
                "unsubscribe {{outcome}}",
            ),
        ),
    ]
