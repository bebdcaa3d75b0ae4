from __future__ import annotations

from pathlib import Path

from faust.assignor.client_assignment import ClientAssignment

from streams.kafka.assignment import load_assignment, save_assignment, still_claimed

CHANGELOG = "app-users-changelog"


def held(actives: list[int], standbys: list[int]) -> ClientAssignment:
    return ClientAssignment(actives={CHANGELOG: actives}, standbys={CHANGELOG: standbys})


def test_a_saved_assignment_is_read_back_and_an_unreadable_one_is_none(tmp_path: Path) -> None:
    path = tmp_path / "v1" / "last-assignment.json"
    assert load_assignment(path) is None
    save_assignment(path, held([0, 2], [1, 3]))
    loaded = load_assignment(path)
    assert loaded is not None and (loaded.actives, loaded.standbys) == ({CHANGELOG: [0, 2]}, {CHANGELOG: [1, 3]})
    path.write_bytes(b"{torn")
    assert load_assignment(path) is None


def test_the_last_assignment_is_claimed_until_another_member_takes_part_of_it() -> None:
    last = held([0, 2], [1, 3])
    assert still_claimed(last, last) is last
    # Alone in the group for a moment, holding everything: still claiming its own.
    assert still_claimed(last, held([0, 1, 2, 3], [])) is last
    # Another member holds partition 2 now: the group has changed, claim what is held.
    assert still_claimed(last, held([0, 1], [2, 3])) is None
    assert still_claimed(None, last) is None
