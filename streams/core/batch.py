"""What goes into processing one batch and what comes out: the contract between the pure
core (`streams/core/processing.py`) and the Kafka shell that makes a batch durable
(`streams/kafka/committer.py`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.training import TrainingBatch
from streams.core.segments import Transitions
from streams.core.state import UserState

# A timer index entry: when a user is due for a check, and who.
TimerEntry = tuple[int, str]
# A Kafka record's headers, as clients give them.
Headers = Sequence[tuple[str, bytes]]


# Not frozen, like Event: one is built per consumed record.
@dataclass(slots=True)
class InputRecord:
    """One consumed message, stripped to what processing needs."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be (fully) processed, with the reason it is parked."""

    record: InputRecord
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class Reroute:
    """A valid event that arrived on a partition other than its user's: forwarded there unprocessed."""

    record: InputRecord
    user_id: str
    partition: int


@dataclass(frozen=True, slots=True)
class Erasure:
    """A user an `erase` event erased: their state gives way to a marker (a hash of the id and
    `erased_ms`) in the changelog and RocksDB, and an erasure record goes to the erasures topic."""

    # The erase event's record: its partition and offset place and name the erasure record.
    record: InputRecord
    user_id: str
    event_id: str
    # Events of the user at or before this instant are the erased person's (event time).
    erased_ms: int
    # When the worker erased them, on its clock: what the deliverer compares jobs' `created_at` with.
    processed_ms: int
    source: str | None


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A list an `unsubscribe` removed the user from: their scheduled emails of that list are
    withdrawn at the deliverer (`withdrawal.py`)."""

    # The unsubscribe event's record: its place names the withdrawal and its partition places it.
    record: InputRecord
    user_id: str
    list_name: str
    event_id: str
    # When the worker processed the unsubscribe, on its clock.
    processed_ms: int


@dataclass(slots=True)
class StateChanges:
    """What goes to the changelog and RocksDB, per partition."""

    states: dict[int, dict[str, UserState]] = field(default_factory=dict)
    last_offsets: dict[int, int] = field(default_factory=dict)
    timer_additions: dict[int, list[TimerEntry]] = field(default_factory=dict)
    timer_removals: dict[int, list[TimerEntry]] = field(default_factory=dict)
    # Users erased, per partition: their state key becomes a tombstone unless `states` holds a
    # new one (events after the erasure), and their erasure marker is written.
    erasures: dict[int, dict[str, Erasure]] = field(default_factory=dict)
    # How many users entered and exited each segment, by (partition, "entered" | "exited"):
    # derived from the outputs' segment transitions once the batch is processed.
    segment_moves: dict[tuple[int, str], Counter[str]] = field(default_factory=dict)


@dataclass(slots=True)
class Outputs:
    """What is published to the output topics, at most once per id."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    # The input record that caused each job, by job id (its partition places the job).
    job_triggers: dict[str, InputRecord] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # What each evaluation that moved a user published, with the user's partition.
    segment_transitions: list[tuple[int, Transitions]] = field(default_factory=list)
    # Events to forward to the partition their user lives in.
    reroutes: list[Reroute] = field(default_factory=list)
    # Lists users left: their scheduled emails of those lists are withdrawn (`withdrawal.py`).
    withdrawals: list[Withdrawal] = field(default_factory=list)


@dataclass(slots=True)
class BatchCounts:
    """What the batch did, for metrics only."""

    applied_by_type: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    # Governance decisions on the jobs flows asked for (`allowed`, `unsubscribed`, `capped_24h`, ...).
    governance: Counter[str] = field(default_factory=Counter)
    # Flow run transitions by `flow:what` (entered, goal, completed, superseded, ...).
    flow_transitions: Counter[str] = field(default_factory=Counter)
    # Prequential recommender quality: predictions made, and hits of each recommender.
    reco_quality: Counter[str] = field(default_factory=Counter)
    timer_lateness_ms: int = 0


@dataclass(slots=True)
class BatchResult:
    """What one batch changed; the shell makes all of it durable before moving on."""

    changes: StateChanges = field(default_factory=StateChanges)
    outputs: Outputs = field(default_factory=Outputs)
    # What the trainer learns from this batch: interactions, opens and clicks by local hour,
    # propensity examples, experiment sends and rewards.
    training: TrainingBatch = field(default_factory=TrainingBatch)
    counts: BatchCounts = field(default_factory=BatchCounts)
