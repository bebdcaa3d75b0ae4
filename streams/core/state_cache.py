"""A bounded in-memory cache of decoded user states, in front of RocksDB."""

from __future__ import annotations

from collections import OrderedDict

from streams.core.state import UserState


class StateCache:
    """Least-recently-used user states per partition, so a rebalance can drop one partition's."""

    def __init__(self, max_users: int) -> None:
        self._max_users = max_users
        self._entries: OrderedDict[tuple[int, str], UserState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, partition: int, user_id: str) -> UserState | None:
        key = (partition, user_id)
        state = self._entries.get(key)
        if state is not None:
            self._entries.move_to_end(key)
        return state

    def put(self, partition: int, user_id: str, state: UserState) -> None:
        key = (partition, user_id)
        self._entries[key] = state
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_users:
            self._entries.popitem(last=False)

    def drop(self, partition: int, user_id: str) -> None:
        self._entries.pop((partition, user_id), None)

    def drop_partitions(self, partitions: set[int]) -> None:
        for key in [k for k in self._entries if k[0] in partitions]:
            del self._entries[key]
