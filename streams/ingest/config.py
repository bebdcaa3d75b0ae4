"""What `tidemail ingest` is configured with (built from the settings by `app`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IngestConfig:
    kafka_bootstrap: str
    events_topic: str
    # Segment write keys a request may authenticate with; none refuses every request.
    write_keys: tuple[str, ...] = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 6070
