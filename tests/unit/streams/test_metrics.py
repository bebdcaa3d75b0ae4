from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from streams import metrics
from streams.metrics import BatchHistogram


def test_a_batch_histogram_exports_cumulative_le_buckets_like_prometheus_client() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("test_latency_seconds", "Latency.", buckets=(0.1, 1, 5), registry=registry)
    histogram.observe_many([0.25, 0.1, 0.75, 3.0, 9.0])
    histogram.observe_many([0.5])
    text = generate_latest(registry).decode()
    assert 'test_latency_seconds_bucket{le="0.1"} 1.0' in text
    assert 'test_latency_seconds_bucket{le="1.0"} 4.0' in text
    assert 'test_latency_seconds_bucket{le="5.0"} 5.0' in text
    assert 'test_latency_seconds_bucket{le="+Inf"} 6.0' in text
    assert "test_latency_seconds_count 6.0" in text
    assert "test_latency_seconds_sum 13.6" in text


def test_garbage_collections_are_timed_by_generation() -> None:
    import gc

    before = REGISTRY.get_sample_value("tidemail_gc_pause_seconds_count", {"generation": "1"}) or 0.0
    metrics.observe_gc_pauses()
    try:
        gc.collect(1)
    finally:
        gc.callbacks.pop()
    assert REGISTRY.get_sample_value("tidemail_gc_pause_seconds_count", {"generation": "1"}) == before + 1
