"""The few panel shapes Tidemail's dashboards are made of, on the Prometheus datasource that
docker/grafana/provisioning/ names `prometheus`."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement, SortOrder, TooltipDisplayMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
# The scrape jobs of docker/prometheus/prometheus.yml. Every process exports every metric
# (one registry), so a panel about one process names its job.
WORKER = 'job="tidemail-worker"'
DELIVERER = 'job="tidemail-deliverer"'
TRAINER = 'job="tidemail-trainer"'
RATE = "$__rate_interval"

# A PromQL expression and its legend.
Query = tuple[str, str]
Panel = Timeseries | Stat
P = TypeVar("P", Timeseries, Stat)


def graph(title: str, description: str, unit: str, *queries: Query, stacked: bool = False) -> Timeseries:
    legend = VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM).show_legend(True)
    tooltip = VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
    panel = (
        Timeseries()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .min(0)
        .legend(legend)
        .tooltip(tooltip)
    )
    if stacked:
        panel = panel.fill_opacity(30)
    return _with_queries(panel, queries)


def stat(title: str, description: str, unit: str, *queries: Query) -> Stat:
    panel = (
        Stat()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(6)
        .height(5)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
    )
    return _with_queries(panel, queries)


def quantiles(histogram: str, selector: str, by: str = "") -> list[Query]:
    """p50, p95 and p99 of a histogram's observations over the panel's rate interval."""
    group = f"{by}, le" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket{{{selector}}}[{RATE}])))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def dashboard(uid: str, title: str, description: str, rows: Sequence[tuple[str, Sequence[Panel]]]) -> Dashboard:
    """A dashboard of titled rows, its panels numbered in order."""
    board = (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["tidemail"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
    )
    panel_id = 0
    for row_title, panels in rows:
        panel_id += 1
        board = board.with_row(Row(row_title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board = board.with_panel(panel.id(panel_id))
    return board


def _with_queries(panel: P, queries: Sequence[Query]) -> P:
    for ref, (expr, legend) in zip(string.ascii_uppercase, queries, strict=False):
        panel = panel.with_target(Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE))
    return panel
