"""The soak's arithmetic and its report: rates, size percentiles, quantiles read from
Prometheus histograms, the RocksDB memory bound, and each figure against its target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.tools.any_worker_bench import AnyWorkerResult, report_any_worker
from app.tools.common import verdict

MIB = 1024 * 1024

# Targets of issue 21 (a 2-core machine with the broker on it).
PAIR_SPEEDUP_TARGET = 1.6
LOCAL_RESTART_TARGET_S = 10.0
CHANGELOG_RESTART_TARGET_S = 60.0
STATE_MEAN_TARGET_BYTES = 1024
RSS_TARGET_BYTES = 2 * 1024 * MIB


def percentile(values: Sequence[int], q: float) -> float:
    """The `q`-th percentile (0-100) by the nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class SizeSummary:
    """Bytes per user at one place (RocksDB or the changelog)."""

    users: int
    mean: float
    p99: float
    total_bytes: int

    @classmethod
    def of(cls, per_user: Sequence[int], total_bytes: int) -> SizeSummary:
        mean = sum(per_user) / len(per_user) if per_user else 0.0
        return cls(len(per_user), mean, percentile(per_user, 99), total_bytes)


def histogram_buckets(metrics_text: str, name: str) -> list[tuple[float, float]]:
    """The cumulative `(le, count)` buckets of an unlabelled Prometheus histogram, in order."""
    buckets = []
    prefix = f"{name}_bucket{{"
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].rsplit("} ", 1)
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((math.inf if bound == "+Inf" else float(bound), float(value)))
    return sorted(buckets)


def counter_total(metrics_text: str, name: str, labels: str = "") -> float:
    """The sum of a counter's samples whose labels contain `labels` (`outcome="sent"`)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith((f"{name}{{", f"{name} ")) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def merge_buckets(*histograms: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Several processes' histograms of the same buckets as one."""
    merged: dict[float, float] = {}
    for buckets in histograms:
        for bound, count in buckets:
            merged[bound] = merged.get(bound, 0.0) + count
    return sorted(merged.items())


def buckets_grown(before: str, after: str, name: str) -> list[tuple[float, float]]:
    """A histogram's observations between two scrapes of one process, its labels merged."""
    start = dict(merge_buckets(histogram_buckets(before, name)))
    return [(bound, count - start.get(bound, 0.0)) for bound, count in merge_buckets(histogram_buckets(after, name))]


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' `histogram_quantile`: linear within the bucket that holds the `q` (0-1) rank;
    the highest finite bound when it falls in +Inf; None with no observations."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True, slots=True)
class Throughput:
    """Events one worker processed in a window, its length and the CPU time the worker used in it."""

    events: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def cores(self) -> float:
        """The share of a core the worker had: what the machine left it."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class RocksMemory:
    """RocksDB's memory settings in force: each worker's partition databases share one block
    cache and one memtable budget."""

    block_cache_bytes: int
    memtable_budget_bytes: int
    databases_per_worker: tuple[int, ...]

    @property
    def per_worker_bytes(self) -> int:
        return self.block_cache_bytes + self.memtable_budget_bytes

    def line(self) -> str:
        return (
            f"RocksDB per worker: block cache {self.block_cache_bytes / MIB:,.0f} MiB and memtables "
            f"{self.memtable_budget_bytes / MIB:,.0f} MiB shared by its databases "
            f"({', '.join(map(str, self.databases_per_worker))}): at most {self.per_worker_bytes / MIB:,.0f} MiB"
        )


@dataclass
class SoakReport:
    """Everything one soak measured; rates in events/s, times in seconds, sizes in bytes."""

    users: int
    events: int
    produce_rate: float
    single: Throughput
    pair: tuple[Throughput, Throughput]
    # Cores each of the deployment's other processes used while one worker, then the pair, was timed.
    beside_single: dict[str, float]
    beside_pair: dict[str, float]
    rocksdb: SizeSummary
    changelog: SizeSummary
    changelog_records: int
    rss: dict[str, tuple[int, int]]
    memory: RocksMemory
    ready_local_s: float
    ready_changelog_s: float
    timer_lag_p50_s: float | None
    timer_lag_p99_s: float | None
    timer_users: int
    jobs: int
    sent: int
    # GET /users/{id} over the pair: settled, then while a wave of reminders is fired.
    api: tuple[AnyWorkerResult, AnyWorkerResult]
    notes: list[str] = field(default_factory=list)

    @property
    def pair_rate(self) -> float:
        return sum(t.rate for t in self.pair)

    @property
    def speedup(self) -> float:
        return self.pair_rate / self.single.rate if self.single.rate else 0.0


def format_report(r: SoakReport) -> str:
    peak_rss = max((peak for _, peak in r.rss.values()), default=0)
    lag = (
        f"p50 {r.timer_lag_p50_s:.2f} s, p99 {r.timer_lag_p99_s:.2f} s"
        if r.timer_lag_p50_s is not None and r.timer_lag_p99_s is not None
        else "no timer came due"
    )
    lines = [
        f"soak: {r.users:,} users, {r.events:,} events (produced at {r.produce_rate:,.0f}/s)",
        f"throughput: 1 worker {r.single.rate:,.0f}/s; 2 workers {r.pair_rate:,.0f}/s "
        f"({r.pair[0].rate:,.0f} + {r.pair[1].rate:,.0f}) = {r.speedup:.2f}x "
        f"(target >= {PAIR_SPEEDUP_TARGET}x: {verdict(r.speedup >= PAIR_SPEEDUP_TARGET)})",
        f"events per CPU-second of a worker: alone {r.single.per_cpu_second:,.0f}, in the pair "
        f"{r.pair[0].per_cpu_second:,.0f} and {r.pair[1].per_cpu_second:,.0f}; cores the machine left them: "
        f"alone {r.single.cores:.2f}, in the pair {r.pair[0].cores:.2f} + {r.pair[1].cores:.2f}",
        "cores used beside the workers (alone / in the pair): "
        + ", ".join(
            f"{name} {cores:.2f} / {r.beside_pair.get(name, 0.0):.2f}"
            for name, cores in sorted(r.beside_single.items())
        ),
        f"state per user in RocksDB: mean {r.rocksdb.mean:,.0f} B, p99 {r.rocksdb.p99:,.0f} B over "
        f"{r.rocksdb.users:,} users; files {r.rocksdb.total_bytes / r.rocksdb.users if r.rocksdb.users else 0:,.0f} "
        f"B/user on disk (target mean <= {STATE_MEAN_TARGET_BYTES} B: "
        f"{verdict(r.rocksdb.mean <= STATE_MEAN_TARGET_BYTES)})",
        f"state per user in the changelog: latest record mean {r.changelog.mean:,.0f} B, p99 "
        f"{r.changelog.p99:,.0f} B; {r.changelog_records:,} records, "
        f"{r.changelog.total_bytes / max(1, r.changelog.users):,.0f} B/user before compaction",
        "worker RSS now / peak: "
        + ", ".join(f"{name} {now / MIB:,.0f} / {peak / MIB:,.0f} MiB" for name, (now, peak) in sorted(r.rss.items()))
        + f" (target <= {RSS_TARGET_BYTES / MIB:,.0f} MiB: {verdict(peak_rss <= RSS_TARGET_BYTES)})",
        r.memory.line(),
        f"ready after a restart from local state: {r.ready_local_s:.1f} s "
        f"(target < {LOCAL_RESTART_TARGET_S:.0f} s: {verdict(r.ready_local_s < LOCAL_RESTART_TARGET_S)})",
        f"ready after a restart with local state deleted (changelog rebuild): {r.ready_changelog_s:.1f} s "
        f"(target < {CHANGELOG_RESTART_TARGET_S:.0f} s: "
        f"{verdict(r.ready_changelog_s < CHANGELOG_RESTART_TARGET_S)})",
        f"timer lag of due flows: {lag} over {r.timer_users:,} users re-evaluated; "
        f"{r.jobs:,} jobs published, {r.sent:,} emails sent to the sink",
        *(report_any_worker(result).strip("\n") for result in r.api),
        *r.notes,
    ]
    return "\n".join(lines)
