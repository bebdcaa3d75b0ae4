"""The worker's notion of now: wall time plus an offset that tests may move forward."""

from __future__ import annotations

import time


class Clock:
    """Milliseconds since the epoch; `advance` exists for tests that move time."""

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, millis: int) -> None:
        if millis < 0:
            raise ValueError("the clock only moves forward")
        self.offset_ms += millis
