"""Incremental segment evaluation (per event, plus the clock) equals evaluating the
history from scratch, after every event and at moments long after the last one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.settings import Settings
from app.tools.bench import mixed_segments_yaml
from streams.core.batch import BatchResult, InputRecord
from streams.core.content import EmailRenderer
from streams.core.segments import SegmentBook
from streams.core.state import StatePolicy, UserState, apply
from tests.factories import BASE_TS, encoded, event_doc, item
from tests.unit.core.support import processor as make_processor

HOUR = 3_600_000
BOOKS = {
    "default": SegmentBook.load(Settings().segments_file),
    # Every kind of condition under every combinator, as `make bench` uses them.
    "mixed": SegmentBook.from_yaml(mixed_segments_yaml(21), "mixed"),
}
RENDERER = EmailRenderer(Settings().templates_dir, defaults={})


def history_event(n: int, kind: str, hours: int, category: str, amount: int) -> dict[str, Any]:
    ts = BASE_TS + hours * HOUR
    extra: dict[str, Any] = {}
    if kind in ("page_view", "click"):
        extra = {"category": category}
    elif kind == "cart_add":
        extra = {"item": item(sku=f"s{n}", category=category, price=amount)}
    elif kind == "purchase":
        extra = {"items": [item(category=category, price=amount)], "total": amount}
    elif kind == "profile_update":
        extra = {"traits": {"age": 20 + amount % 60, "country": category.upper()[:2]}}
    return event_doc(kind, "u1", event_id=f"e{n}", ts=ts, **extra)


events = st.lists(
    st.tuples(
        st.sampled_from(["page_view", "click", "cart_add", "cart_remove", "purchase", "email_open", "profile_update"]),
        st.integers(0, 24 * 45),
        st.sampled_from(["outdoor", "running", "books", "gb", "de"]),
        st.integers(1, 300),
    ),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("book", BOOKS)
@settings(max_examples=120, deadline=None)
@given(events)
def test_incremental_membership_equals_from_scratch(book: str, history: list[tuple[str, int, str, int]]) -> None:
    segments = BOOKS[book]
    docs = sorted((history_event(n, *entry) for n, entry in enumerate(history)), key=lambda d: d["timestamp"])
    now = {"ms": BASE_TS}
    processor = make_processor(renderer=RENDERER, segments=segments, flows_yaml="flows: []", clock_ms=lambda: now["ms"])
    stored: dict[str, UserState] = {}
    index: set[tuple[int, str]] = set()  # the partition's timer index, as the hot path keeps it

    def load(partition: int, user_id: str) -> UserState | None:
        return stored.get(user_id)

    def keep(result: BatchResult) -> None:
        stored.update(result.changes.states.get(0, {}))
        index.update(result.changes.timer_additions.get(0, []))
        index.difference_update(result.changes.timer_removals.get(0, []))

    def run_clock(moment: int) -> None:
        now["ms"] = moment
        for _ in range(20):  # each clock batch catches up a bounded number of flips
            due = sorted(entry for entry in index if entry[0] <= moment)
            if not due:
                return
            keep(processor.on_clock({0: due}, load))
        raise AssertionError("timers kept coming due")

    scratch = UserState("u1")
    for offset, doc in enumerate(docs):
        run_clock(doc["timestamp"])
        keep(processor.process({0: [InputRecord(0, offset, b"u1", encoded(doc), doc["timestamp"])]}, load))
        event = processor_event(doc)
        scratch = apply(scratch, event, StatePolicy())
        scratch.windows, _ = segments.accumulate(scratch.windows, event)
        expected = segments.on_clock(scratch, doc["timestamp"])
        assert set(stored["u1"].segments) == set(expected.segments), f"after event {offset}"

    last = docs[-1]["timestamp"]
    for moment in (last, last + 2 * HOUR, last + 8 * 24 * HOUR, last + 40 * 24 * HOUR):
        run_clock(moment)
        expected = segments.on_clock(scratch, moment)
        assert set(stored["u1"].segments) == set(expected.segments), moment - last


def processor_event(doc: dict[str, Any]) -> Any:
    from streams.core.events import validate_event

    return validate_event(doc, b"u1")
