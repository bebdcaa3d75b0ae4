"""Rolling-window buckets: any arrival order gives the totals of the events themselves."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.state import UserState
from streams.core.state_codec import decode_state, state_document
from streams.core.windows import AggregateSpec, add, total_and_next_expiry

HOUR = 3_600_000
SPEC = AggregateSpec("page_view", (), None, HOUR)
WINDOW = 24 * HOUR
SPAN = SPEC.granularity_ms + WINDOW

arrivals = st.lists(st.tuples(st.integers(0, 60 * HOUR), st.integers(1, 5)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(arrivals, st.integers(0, 30 * HOUR))
def test_totals_match_the_events_whatever_order_they_arrive_in(
    events: list[tuple[int, int]], hours_after_the_last: int
) -> None:
    buckets: list[float] = []
    for ts, amount in events:
        buckets = add(buckets, SPEC, ts, amount, WINDOW)
    now = max(ts for ts, _ in events) + hours_after_the_last
    counted = [(ts - ts % HOUR + SPAN, amount) for ts, amount in events if ts - ts % HOUR + SPAN > now]
    expected_expiry = min((end for end, _ in counted), default=None)
    assert total_and_next_expiry(buckets, SPAN, now) == (sum(a for _, a in counted), expected_expiry)
    starts = buckets[::2]
    assert starts == sorted(set(starts)), "one bucket per start, oldest first"
    assert len(starts) <= WINDOW // HOUR + 2


def test_adding_never_changes_the_buckets_it_was_given() -> None:
    buckets = add([], SPEC, 5 * HOUR, 1, WINDOW)
    before = list(buckets)
    for ts in (5 * HOUR + 1, 7 * HOUR, 2 * HOUR):
        add(buckets, SPEC, ts, 1, WINDOW)
    assert buckets == before


def test_states_written_with_bucket_maps_still_read() -> None:
    old = state_document(UserState("u1"))
    old["windows"] = {"count|page_view||3600000": {str(7 * HOUR): 2.0, str(5 * HOUR): 1.0}}
    state = decode_state(orjson.dumps(old))
    assert state.windows == {"count|page_view||3600000": [5 * HOUR, 1.0, 7 * HOUR, 2.0]}
    assert total_and_next_expiry(state.windows["count|page_view||3600000"], SPAN, 8 * HOUR) == (3.0, 5 * HOUR + SPAN)
