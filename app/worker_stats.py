"""What the API tells about the worker beyond Prometheus: events processed and their
latencies (for the benchmark's `/stats`), and the recommender's prequential quality."""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from streams.core.batch import BatchResult

RECOMMENDERS = ("model", "popular")
NEW_RECOMMENDERS = ("model", "popular", "item_to_item")


class LatencySamples:
    """Events consumed, and the latencies of the most recent ones since the last reset."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.processed = 0
        self._samples: deque[float] = deque(maxlen=capacity)

    def consumed(self, latencies_ms: Sequence[float]) -> None:
        self.processed += len(latencies_ms)
        self._samples.extend(latencies_ms)

    def reset(self) -> None:
        self._samples.clear()

    def report(self, percentiles: bool) -> dict[str, Any]:
        """The `/stats` body; percentiles only when asked: sorting 200k samples costs tens
        of milliseconds, and the benchmark polls progress every 50."""
        body: dict[str, Any] = {"processed": self.processed, "latency_samples": len(self._samples)}
        if percentiles and len(self._samples) >= 2:
            cuts = statistics.quantiles(sorted(self._samples), n=100)
            body.update(latency_p50_ms=round(cuts[49], 2), latency_p99_ms=round(cuts[98], 2))
        return body


class RecoQuality:
    """How often each recommender's top 10 held what users then clicked or bought, and the
    products they touched for the first time."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def observe(self, result: BatchResult) -> None:
        if result.counts.reco_quality:
            self._counts.update(result.counts.reco_quality)

    def report(self) -> dict[str, Any]:
        counts = self._counts
        predictions, fresh = counts["predictions"], counts["new_predictions"]
        return {
            "predictions": predictions,
            "hit_rate_at_10": {name: _rate(counts[name], predictions) for name in RECOMMENDERS},
            "new_to_user": {
                "predictions": fresh,
                "hit_rate_at_10": {name: _rate(counts[f"new_{name}"], fresh) for name in NEW_RECOMMENDERS},
            },
        }


def _rate(hits: int, predictions: int) -> float | None:
    return round(hits / predictions, 4) if predictions else None
