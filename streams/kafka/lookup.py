"""Reading the stored states of the users this worker owns, for the API."""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.state import UserState
from streams.core.state_codec import decode_state
from streams.kafka.ownership import PartitionOwnership
from streams.kafka.store import UserStore


@dataclass(frozen=True, slots=True)
class NotOwned:
    """The user lives in a partition this worker does not own."""

    partition: int


class UserLookup:
    """User states straight from RocksDB: what is durable, not what a batch in flight holds."""

    def __init__(self, store: UserStore, ownership: PartitionOwnership) -> None:
        self._store = store
        self._ownership = ownership

    def partition_of(self, user_id: str) -> int:
        return self._store.partition_for(user_id.encode())

    def get(self, user_id: str) -> UserState | NotOwned | None:
        """The user's state, None for a user never seen, or the partition the user lives in instead."""
        key = user_id.encode()
        partition = self._store.partition_for(key)
        if partition not in self._ownership.owned:
            return NotOwned(partition)
        raw = self._store.get(partition, key)
        return decode_state(raw) if raw is not None else None

    def members(self, segment: str, limit: int) -> list[str]:
        """The first `limit` users of `segment` found, in partition and key order."""
        sample: list[str] = []
        for partition in sorted(self._ownership.owned):
            for raw in self._store.sample_users(partition):
                state = decode_state(raw)
                if segment in state.segments:
                    sample.append(state.user_id)
                    if len(sample) >= limit:
                        return sample
        return sample
