"""The user states processing starts from: a cache of recent ones in front of RocksDB."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streams.core.batch import Erasure
from streams.core.state import UserState
from streams.core.state_cache import StateCache
from streams.core.state_codec import decode_state
from streams.kafka.store import UserStore


class UserStates:
    """The states processing starts from: the cached ones, else RocksDB's."""

    def __init__(self, store: UserStore, cache: StateCache) -> None:
        self._store = store
        self._cache = cache

    def __len__(self) -> int:
        """How many states are cached."""
        return len(self._cache)

    def load(self, partition: int, user_id: str) -> UserState | None:
        """The user's state; for an id erased and not seen since, an empty state that
        remembers the erasure (see streams/core/erasure.py); None for an id never seen."""
        state = self._cache.get(partition, user_id)
        if state is not None:
            return state
        raw = self._store.get(partition, user_id.encode())
        if raw is not None:
            return decode_state(raw)
        erased_ms = self._store.erased_ms(partition, user_id)
        return UserState(user_id, erased_ms=erased_ms) if erased_ms is not None else None

    def remember(self, states: Mapping[int, Mapping[str, UserState]]) -> None:
        """Cache states that are now durable."""
        for partition, users in states.items():
            for user_id, state in users.items():
                self._cache.put(partition, user_id, state)

    def erase(self, erasures: Mapping[int, Mapping[str, Erasure]]) -> None:
        """Drop the cached states of users now durably erased."""
        for partition, users in erasures.items():
            for user_id in users:
                self._cache.drop(partition, user_id)

    def forget(self, partitions: Iterable[int]) -> None:
        self._cache.drop_partitions(set(partitions))
