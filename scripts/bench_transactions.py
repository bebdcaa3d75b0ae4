"""Back-to-back Kafka transactions of one aiokafka producer against the local broker, by how
long the producer waits to retry CONCURRENT_TRANSACTIONS.

    .venv/bin/python scripts/bench_transactions.py [--transactions 300] [--retry-ms 20 5 2] [--repeat 3]

Each transaction writes one record to each of two partitions of a topic of its own and
commits; the next begins at once, as a worker's next batch does. When it begins before the
coordinator has written the last one's commit markers, adding its first partition is
refused and retried. Prints, per retry delay and run, the transaction's duration (begin to
commit acknowledged) and how many times adding partitions was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.producer import sender

BOOTSTRAP = "localhost:9092"


def count_refusals() -> list[int]:
    """Counts AddPartitionsToTxn answers that ask for a retry, in the list returned."""
    refusals = [0]
    handle_response = sender.AddPartitionsToTxnHandler.handle_response

    def counted(self: Any, response: Any) -> Any:
        backoff = handle_response(self, response)
        if backoff is not None:
            refusals[0] += 1
        return backoff

    sender.AddPartitionsToTxnHandler.handle_response = counted
    return refusals


async def run(topic: str, transactions: int, retry_s: float, refusals: list[int]) -> list[float]:
    sender.BACKOFF_OVERRIDE = retry_s
    refusals[0] = 0
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topic}-{retry_s}")
    await producer.start()
    durations = []
    try:
        for _ in range(transactions):
            began = time.perf_counter()
            await producer.begin_transaction()
            sent = []
            for partition in (0, 1):
                batch = producer.create_batch()
                batch.append(key=b"k", value=b"v" * 100, timestamp=None)
                batch.close()
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*sent)
            await producer.commit_transaction()
            durations.append((time.perf_counter() - began) * 1000)
    finally:
        await producer.stop()
    return sorted(durations)


async def main(transactions: int, retries_ms: list[float], repeat: int) -> None:
    topic = f"bench-transactions-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        refusals = count_refusals()
        for n in range(repeat):
            for retry_ms in retries_ms:
                durations = await run(topic, transactions, retry_ms / 1000, refusals)
                p50, p90, p99 = (durations[int(len(durations) * q)] for q in (0.5, 0.9, 0.99))
                print(
                    f"retry {retry_ms:g} ms, run {n + 1}: {transactions} transactions, p50 {p50:.1f} ms, "
                    f"p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {durations[-1]:.1f} ms; "
                    f"adding partitions refused {refusals[0]} times",
                    flush=True,
                )
    finally:
        await admin.delete_topics([topic])
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=300)
    parser.add_argument("--retry-ms", type=float, nargs="+", default=[20.0, 5.0, 2.0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.transactions, args.retry_ms, args.repeat))
