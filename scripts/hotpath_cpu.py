"""CPU time of the hot path's pure work per event, without Kafka: the batch processor over
generated shop traffic in batches of 2,000 per partition, with an item model trained
beforehand (ranking is part of the work), each changed state encoded as the committer does.
Then the trainer's side of the same traffic: each batch's training records, as the worker
publishes them, decoded and learned as the trainer does, with a snapshot exported every 50
records; reported in interactions per CPU-second (the target is 30,000).

Steadier than a wall-clock `make bench` on a shared machine, and it runs on any checkout
since the layered packages (2026-12-02), so two versions can be compared in one sitting:

    cd OTHER_CHECKOUT && PYTHONPATH=$PWD python /path/to/scripts/hotpath_cpu.py 100000
"""

from __future__ import annotations

import itertools
import sys
import time

from app.faust_app import build_processor
from app.settings import Settings
from app.tools.generator import EventGenerator
from app.tools.model_quality import trained_item_model
from streams.core.batch import InputRecord
from streams.core.clock import Clock
from streams.core.partitioning import partition_of
from streams.core.state import UserState
from streams.core.state_codec import encode_state

PARTITIONS = 8
BATCH = 2_000
AT_MS = 1_796_000_000_000
# The trainer publishes a snapshot every few seconds; at ~50 worker batches a second that is
# about every 50 records it learns.
SNAPSHOT_EVERY = 50


def main(events: int) -> None:
    processor = build_processor(Settings.from_env({"TIDEMAIL_PARTITIONS": str(PARTITIONS)}), Clock())
    processor.item_model = trained_item_model(users=20_000, events=100_000, seed=11)
    messages = itertools.islice(EventGenerator(20_000, 5).messages(lambda: AT_MS), events)
    by_partition: dict[int, list[InputRecord]] = {}
    for offset, (key, value) in enumerate(messages):
        partition = partition_of(key, PARTITIONS)
        by_partition.setdefault(partition, []).append(InputRecord(partition, offset, key, value, AT_MS))
    stored: dict[tuple[int, str], UserState] = {}
    training: list[bytes] = []
    started = time.process_time()
    for partition, records in by_partition.items():
        for first in range(0, len(records), BATCH):
            batch = {partition: records[first : first + BATCH]}
            result = processor.process(batch, lambda p, user: stored.get((p, user)))
            for p, states in result.changes.states.items():
                for user, state in states.items():
                    encode_state(state)
                    stored[(p, user)] = state
            training += [chunk.to_bytes() for chunk in result.training.split()]
    cpu = time.process_time() - started
    print(f"{cpu:.2f} s CPU, {cpu / events * 1e6:.1f} us/event over {events:,} events")
    train(training)


def train(records: list[bytes]) -> None:
    # Imported here: the hot-path part also runs on checkouts whose trainer differs.
    from models.item_trainer import ItemTrainer
    from models.training import TrainingBatch

    trainer = ItemTrainer(half_life_days=14, capacity=5_000)
    interactions = 0
    started = time.process_time()
    for offset, raw in enumerate(records):
        batch = TrainingBatch.from_bytes(raw)
        interactions += len(batch.interactions)
        trainer.learn_record(batch, offset)
        if offset % SNAPSHOT_EVERY == 0:
            trainer.export().to_bytes()
    cpu = time.process_time() - started
    print(
        f"trainer: {interactions:,} interactions in {len(records):,} records, {cpu:.2f} s CPU, "
        f"{interactions / cpu:,.0f} interactions per CPU-second (with a snapshot every {SNAPSHOT_EVERY} records)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
