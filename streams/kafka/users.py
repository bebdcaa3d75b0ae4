"""The user states processing starts from: a cache of recent ones in front of RocksDB."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streams.core.state import UserState, decode_state
from streams.core.state_cache import StateCache
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
        state = self._cache.get(partition, user_id)
        if state is not None:
            return state
        raw = self._store.get(partition, user_id.encode())
        return decode_state(raw) if raw is not None else None

    def remember(self, states: Mapping[int, Mapping[str, UserState]]) -> None:
        """Cache states that are now durable."""
        for partition, users in states.items():
            for user_id, state in users.items():
                self._cache.put(partition, user_id, state)

    def forget(self, partitions: Iterable[int]) -> None:
        self._cache.drop_partitions(set(partitions))
