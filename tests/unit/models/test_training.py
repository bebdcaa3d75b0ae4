"""The training record's users erased: on the wire only when there are some, and after every
interaction of theirs when a record is split."""

from __future__ import annotations

import orjson

from models.interactions import Interaction
from models.training import TrainingBatch


def test_erased_users_travel_as_a_fifth_array_only_when_there_are_some() -> None:
    plain = TrainingBatch(engagement_hours=[3])
    assert orjson.loads(plain.to_bytes()) == [[], [3], [], []]
    erasing = TrainingBatch(engagement_hours=[3], forgotten=["ann"])
    assert orjson.loads(erasing.to_bytes()) == [[], [3], [], [], ["ann"]]
    assert TrainingBatch.from_bytes(erasing.to_bytes()) == erasing
    assert TrainingBatch.from_bytes(plain.to_bytes()) == plain
    assert TrainingBatch(forgotten=["ann"])


def test_a_split_record_carries_the_erased_users_in_its_last_piece() -> None:
    interactions = [(Interaction("ann", f"S{n}", 1.0, n), None) for n in range(5)]
    pieces = TrainingBatch(interactions=interactions, forgotten=["ann"]).split(max_items=2)
    assert [len(piece.interactions) for piece in pieces] == [2, 2, 1]
    assert [piece.forgotten for piece in pieces] == [[], [], ["ann"]]
    assert TrainingBatch(forgotten=["ann"]).split() == [TrainingBatch(forgotten=["ann"])]
