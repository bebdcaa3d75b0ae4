"""The deliverer's dashboard: what happened to each job, how late, and what waits."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from app.tools.dashboards.panels import DELIVERER, RATE, Panel, dashboard, graph, quantiles, stat

FINISHED = 'outcome=~"sent|bounced|failed|unconfirmed"'


def deliverer_dashboard() -> Dashboard:
    return dashboard(
        "tidemail-deliverer",
        "Tidemail deliverer",
        "Email jobs to SMTP, at most once per job id (job tidemail-deliverer).",
        [("Deliveries", _deliveries()), ("Waiting and lag", _waiting())],
    )


def _deliveries() -> list[Panel]:
    return [
        graph(
            "Deliveries by outcome",
            "Jobs finished: sent, bounced (hard), failed, unconfirmed (a crash mid-send); duplicate and invalid.",
            "ops",
            (f"sum by (outcome) (rate(tidemail_deliveries_total{{{DELIVERER}}}[{RATE}]))", "{{outcome}}"),
        ),
        graph(
            "Bounce and failure rates",
            "Hard bounces among sent and bounced; failures among every finished job (alerts: over 5%).",
            "percentunit",
            (
                f'sum(rate(tidemail_deliveries_total{{{DELIVERER}, outcome="bounced"}}[{RATE}]))'
                f' / sum(rate(tidemail_deliveries_total{{{DELIVERER}, outcome=~"sent|bounced"}}[{RATE}]))',
                "bounce rate",
            ),
            (
                f'sum(rate(tidemail_deliveries_total{{{DELIVERER}, outcome="failed"}}[{RATE}]))'
                f" / sum(rate(tidemail_deliveries_total{{{DELIVERER}, {FINISHED}}}[{RATE}]))",
                "failure rate",
            ),
        ),
        graph(
            "Delivery delay",
            "From a job's send_at to the relay accepting it.",
            "s",
            *quantiles("tidemail_delivery_delay_seconds", DELIVERER),
        ),
        graph(
            "Retries and invalid jobs",
            "SMTP attempts that failed transiently and were scheduled again; job records that were not jobs.",
            "ops",
            (f"sum(rate(tidemail_delivery_retries_total{{{DELIVERER}}}[{RATE}]))", "retries"),
            (
                f'sum(rate(tidemail_dead_letters_total{{{DELIVERER}, kind="invalid_job"}}[{RATE}]))',
                "invalid jobs dead-lettered",
            ),
        ),
    ]


def _waiting() -> list[Panel]:
    return [
        stat("Deliverers up", "Deliverers Prometheus scrapes.", "short", (f"sum(up{{{DELIVERER}}})", "up")),
        stat(
            "Jobs pending",
            "Jobs read and not finished; most wait for their send_at.",
            "short",
            (f"sum(tidemail_delivery_pending_jobs{{{DELIVERER}}})", "pending"),
        ),
        graph(
            "Jobs lag",
            "Records of each jobs partition not yet read into the schedule (end offset minus position).",
            "short",
            (f"sum by (topic, partition) (tidemail_consumer_lag_records{{{DELIVERER}}})", "partition {{partition}}"),
        ),
        graph(
            "Delivery claims unavailable",
            "Redis calls for claims that failed or were skipped after one; the deliveries topic decides alone.",
            "ops",
            (f"sum(rate(tidemail_delivery_claims_unavailable_total{{{DELIVERER}}}[{RATE}]))", "claims"),
        ),
    ]
