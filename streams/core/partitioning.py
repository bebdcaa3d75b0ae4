"""Which partition a user's events belong to: Kafka's default partitioner for keyed records.

The Java client, Kafka Streams and aiokafka place a keyed record by murmur2 of its key;
librdkafka clients (kcat, confluent-kafka, Go, node) default to CRC32 instead, which puts
the same user on another partition. The worker keeps every user's state on the murmur2
partition and forwards records that arrive elsewhere (`streams/kafka/outputs.py`).
"""

from __future__ import annotations

# Set on a forwarded record: `<topic>:<partition>:<offset>` it was first produced at.
REROUTED_FROM_HEADER = "tidemail.rerouted-from"

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as `org.apache.kafka.common.utils.Utils.murmur2` computes it, as unsigned 32 bits."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail >= 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Partitioner:
    """`partition_of` for one topic, remembering each key it placed (the same users recur)."""

    def __init__(self, partitions: int, remembered: int = 1_000_000) -> None:
        self.partitions = partitions
        self._remembered = remembered
        self._placed: dict[str, int] = {}

    def __call__(self, user_id: str) -> int:
        placed = self._placed.get(user_id)
        if placed is None:
            if len(self._placed) >= self._remembered:
                self._placed.clear()
            placed = self._placed[user_id] = partition_of(user_id.encode(), self.partitions)
        return placed
