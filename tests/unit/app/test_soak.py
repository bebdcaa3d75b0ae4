"""The soak's pure pieces: its world's shape and the arithmetic of its report."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from app.tools.any_worker_bench import AnyWorkerResult, Sample, report_any_worker
from app.tools.soak_report import (
    RocksMemory,
    SizeSummary,
    SoakReport,
    Throughput,
    counter_total,
    format_report,
    histogram_buckets,
    histogram_quantile,
    merge_buckets,
    percentile,
)
from app.tools.soak_world import SoakWorld, scrambled
from streams.core.errors import InvalidEvent
from streams.core.events import parse_event

METRICS = """# HELP tidemail_timer_lateness_seconds How late.
# TYPE tidemail_timer_lateness_seconds histogram
tidemail_timer_lateness_seconds_bucket{le="0.1"} 10.0
tidemail_timer_lateness_seconds_bucket{le="0.5"} 90.0
tidemail_timer_lateness_seconds_bucket{le="1.0"} 100.0
tidemail_timer_lateness_seconds_bucket{le="+Inf"} 100.0
tidemail_timer_lateness_seconds_count 100.0
tidemail_deliveries_total{outcome="sent"} 7.0
tidemail_deliveries_total{outcome="bounced"} 2.0
"""


@pytest.mark.parametrize("users", [1, 7, 1000, 20_000])
def test_every_user_comes_first_once_in_the_scrambled_order(users: int) -> None:
    assert sorted(scrambled(i, users) for i in range(users)) == list(range(users))


def test_the_world_gives_exactly_the_events_asked_keyed_by_user_and_sees_every_user() -> None:
    world = SoakWorld(users=2_000, seed=3)
    messages = list(world.messages(8_000, lambda: 1_795_000_000_000))
    assert len(messages) == 8_000
    assert world.users_seen == 2_000
    types: Counter[str] = Counter()
    invalid = 0
    for key, value in messages:
        try:
            event = parse_event(value, key, 65_536)
        except InvalidEvent:
            invalid += 1
            continue
        types[event.type] += 1
    assert 0 < invalid < 40  # the broken share, a tenth of a percent
    assert {"signup", "page_view", "cart_add", "purchase", "email_open", "email_click"} <= set(types)
    assert len({key for key, _ in messages} - {b"u-broken"}) == 2_000


def test_quantiles_interpolate_within_the_bucket_as_prometheus_does() -> None:
    buckets = histogram_buckets(METRICS, "tidemail_timer_lateness_seconds")
    assert buckets == [(0.1, 10.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.3)  # rank 50: half way from 10 to 90
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.95)
    assert histogram_quantile([(1.0, 0.0), (math.inf, 0.0)], 0.5) is None
    assert (
        histogram_quantile(merge_buckets(buckets, [(0.1, 0.0), (0.5, 0.0), (1.0, 0.0), (math.inf, 100.0)]), 0.99) == 1.0
    )


def test_counters_sum_the_samples_with_the_label() -> None:
    assert counter_total(METRICS, "tidemail_deliveries_total", 'outcome="sent"') == 7.0
    assert counter_total(METRICS, "tidemail_deliveries_total") == 9.0


def test_sizes_and_the_report_against_the_targets() -> None:
    assert percentile(list(range(1, 101)), 99) == 99.0
    assert percentile([], 99) == 0.0
    memory = RocksMemory(512 << 20, 256 << 20, (8, 16))
    report = SoakReport(
        users=1_000,
        events=4_000,
        produce_rate=30_000,
        single=Throughput(100_000, 10.0, 12.5),
        pair=(Throughput(70_000, 10.0, 10.0), Throughput(80_000, 10.0, 10.0)),
        beside_single={"deliverer": 0.2, "trainer": 0.25},
        beside_pair={"deliverer": 0.45, "trainer": 0.3},
        rocksdb=SizeSummary.of([500] * 99 + [2_000], 600_000),
        changelog=SizeSummary.of([480] * 100, 4_000_000),
        changelog_records=9_000,
        rss={"worker-1": (900 << 20, 1_000 << 20), "worker-2": (1_000 << 20, 3_000 << 20)},
        memory=memory,
        ready_local_s=4.0,
        ready_changelog_s=75.0,
        timer_lag_p50_s=0.3,
        timer_lag_p99_s=0.95,
        timer_users=500,
        jobs=800,
        sent=700,
        api=(
            AnyWorkerResult(
                200, 500, [Sample(forwarded, "ok", 1.0) for forwarded in (False, True) for _ in range(100)], True
            ),
            AnyWorkerResult(
                requests=200,
                rate=500,
                samples=[Sample(False, "ok", 2.0 + n / 100) for n in range(100)]
                + [Sample(True, "ok", 4.0 + n / 10) for n in range(99)]
                + [Sample(True, "503", 30.0)],
                segments_agree=True,
                during="while a wave of reminders is fired",
                cores={"worker-1": 0.9, "deliverer": 0.456, "client": 0.2},
            ),
        ),
    )
    text = format_report(report)
    assert "2 workers 15,000/s (7,000 + 8,000) = 1.50x (target >= 1.6x: MISSED)" in text
    assert "mean 515 B, p99 500 B" in text
    assert (
        "alone 8,000, in the pair 7,000 and 8,000; cores the machine left them: alone 1.25, in the pair 1.00 + 1.00"
        in text
    )
    assert "cores used beside the workers (alone / in the pair): deliverer 0.20 / 0.45, trainer 0.25 / 0.30" in text
    assert "(target <= 2,048 MiB: MISSED)" in text
    assert "shared by its databases (8, 16): at most 768 MiB" in text
    assert "restart from local state: 4.0 s (target < 10 s: met)" in text
    assert "changelog rebuild): 75.0 s (target < 60 s: MISSED)" in text
    assert "errors 0 of 200 (target 0: met); forwarded p99 1.00 ms (1.0x local; target < 10 ms: met)" in text
    assert "200 requests at 500/s, while a wave of reminders is fired\n" in text
    assert "local              100       0     2.50     2.99      3.0" in text
    assert "forwarded          100       1     9.00    30.00     30.0" in text
    assert "errors: 503 x1" in text
    assert "cores used meanwhile: client 0.20, deliverer 0.46, worker-1 0.90" in text
    assert "errors 1 of 200 (target 0: MISSED); forwarded p99 30.00 ms (10.0x local; target < 10 ms: MISSED)" in text
    assert "/segments fleet sizes equal at both workers: True" in text


def test_the_latency_line_holds_each_measure_against_its_rates_target() -> None:
    from app.tools.soak_latency import GcPauses, Latency, format_latency

    pauses = GcPauses(3, 240.0, 100.0)
    met = format_latency(Latency(1_000, 998.0, 420, 12.0, 44.0, 9.0, 30.0, 8.0, 25.0, 3.0, 12.5, pauses))
    missed = format_latency(Latency(5_000, 4_100.0, 2_000, 40.0, 130.0, 35.0, 120.0, 30.0, 110.0, 6.0, 24.0, pauses))
    assert "p99 44 ms over 420 welcome jobs (target p99 < 50 ms: met)" in met
    assert "(target p99 < 100 ms: MISSED)" in missed
    assert "event to state durable p50 35 ms, p99 120 ms" in missed
    assert "before its transaction commits: p50 30 ms, p99 110 ms" in missed
    assert "a partition's transaction p50 3.0 ms, p99 12.5 ms" in met
    assert "3 garbage collections stopped the worker 240 ms in all, the longest <= 100 ms" in met


def test_gc_pauses_are_what_the_worker_s_histogram_gained_over_all_generations() -> None:
    from app.tools.soak_latency import GcPauses

    def text(young: tuple[int, int, int], old: tuple[int, int, int], seconds: float) -> str:
        lines = []
        for generation, counts in (("0", young), ("2", old)):
            for bound, count in zip(("0.01", "0.1", "+Inf"), counts, strict=True):
                lines.append(f'tidemail_gc_pause_seconds_bucket{{generation="{generation}",le="{bound}"}} {count}.0')
            lines.append(f'tidemail_gc_pause_seconds_sum{{generation="{generation}"}} {seconds}')
        return "\n".join(lines)

    before = text((2, 2, 2), (0, 0, 0), 0.01)
    after = text((5, 5, 5), (0, 1, 1), 0.05)
    assert GcPauses.between(before, after) == GcPauses(4, 80.0, 100.0)


def test_the_soak_holds_the_same_zones_emails_at_every_hour_it_may_start() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from app.tools.generator import PLACES
    from app.tools.soak_world import steady_quiet_hours
    from streams.core.governance import QuietHours

    held_by_hour = []
    for hour in range(24):
        start = datetime(2026, 12, 4, hour, 30, tzinfo=UTC)
        quiet = QuietHours.parse(steady_quiet_hours(int(start.timestamp() * 1000)))
        assert quiet is not None
        held_by_hour.append({zone for _, zone, _ in PLACES if quiet.covers(start.astimezone(ZoneInfo(zone)).hour)})
    assert steady_quiet_hours(int(datetime(2026, 12, 4, 12, 5, tzinfo=UTC).timestamp() * 1000)) == "21-8"
    assert all(held == {"America/New_York", "Asia/Tokyo"} for held in held_by_hour)


def test_the_any_worker_line_meets_its_targets_with_no_error_and_quick_forwards() -> None:
    samples = [Sample(forwarded, "ok", 1.0 + forwarded) for forwarded in (False, True) for _ in range(50)]
    text = report_any_worker(AnyWorkerResult(100, 500, samples, segments_agree=False))
    assert "errors 0 of 100 (target 0: met); forwarded p99 2.00 ms (2.0x local; target < 10 ms: met)" in text
    assert "/segments fleet sizes equal at both workers: False" in text
