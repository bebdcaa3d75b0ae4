"""Where a request about a user is answered, and the fleet's segment sizes from each worker's share."""

from __future__ import annotations

from collections import Counter

from streams.core.routing import (
    FleetView,
    Forward,
    Local,
    Misdirected,
    Unavailable,
    fleet_sizes,
    owners_of,
    route,
)

A, B = "http://a:6066", "http://b:6066"
FLEET = FleetView(A, {0: A, 1: B}, frozenset({A, B}))


def test_a_worker_answers_for_its_partitions_and_forwards_the_others_to_their_owner() -> None:
    assert route(0, frozenset({0}), FLEET, forwarded=False) == Local()
    assert route(1, frozenset({0}), FLEET, forwarded=False) == Forward(B)


def test_a_forwarded_request_is_answered_where_it_lands_or_refused_never_forwarded_again() -> None:
    assert route(0, frozenset({0}), FLEET, forwarded=True) == Local()
    assert route(1, frozenset({0}), FLEET, forwarded=True) == Misdirected()


def test_a_partition_with_no_owner_or_assigned_here_but_not_yet_taken_over_is_unavailable() -> None:
    assert route(2, frozenset({0}), FLEET, forwarded=False) == Unavailable()
    # Assigned to this worker, which is still recovering it.
    assert route(0, frozenset(), FLEET, forwarded=False) == Unavailable()


def test_owners_come_from_the_layout_of_the_named_topic_only() -> None:
    layout = {A: {"users-changelog": [0, 2], "other": [1]}, B: {"users-changelog": [1]}, "http://c:6066": {}}
    assert owners_of(layout, "users-changelog") == {0: A, 2: A, 1: B}


def test_the_fleet_lists_this_worker_first_and_members_owning_nothing() -> None:
    fleet = FleetView(B, {0: A, 1: B}, frozenset({A, B, "http://c:6066"}))
    assert fleet.urls == [B, A, "http://c:6066"]


def test_fleet_sizes_add_each_partition_once_and_name_the_partitions_nobody_reported() -> None:
    reports = {A: {0: {"vip": 2, "new": 1}}, B: {1: {"vip": 3}}}
    sizes = fleet_sizes(reports, {0: A, 1: B, 2: B}, partitions=3)
    assert sizes.totals == Counter({"vip": 5, "new": 1})
    assert sizes.missing == [2]


def test_in_a_rebalance_a_partition_reported_twice_counts_its_owners_report() -> None:
    # B has taken partition 0 over; A's report of it is from before.
    reports = {A: {0: {"vip": 9}}, B: {0: {"vip": 4}, 1: {"vip": 1}}}
    assert fleet_sizes(reports, {0: B, 1: B}, partitions=2).totals == Counter({"vip": 5})
    # With no owner among the reporters, one report is taken, the same whichever order they came in.
    assert fleet_sizes(reports, {}, partitions=2).by_partition[0] == {"vip": 9}
    assert fleet_sizes(dict(reversed(reports.items())), {}, partitions=2).by_partition[0] == {"vip": 9}
