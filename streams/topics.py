"""Creating Tidemail's topics and checking the events topic is co-partitioned with the tables."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.errors import ConfigError


async def ensure_topics(
    bootstrap: str, partitions: int, replication: int, names: list[str], keyed_by_user: str
) -> None:
    """Create missing topics; refuse to run when `keyed_by_user` has another partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, replication) for name in names if name not in existing]
        if missing:
            await admin.create_topics(missing)
        found = await _partition_count(admin, keyed_by_user)
        if found != partitions:
            raise ConfigError(
                f"topic {keyed_by_user!r} has {found} partitions but TIDEMAIL_PARTITIONS is {partitions}; "
                "they must match so a user's events and state live in the same partition"
            )
    finally:
        await admin.close()


async def _partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    # A topic created a moment ago can still describe as having no partitions.
    for _ in range(100):
        described = await admin.describe_topics([topic])
        count = len(described[0]["partitions"])
        if count:
            return count
        await asyncio.sleep(0.1)
    raise ConfigError(f"topic {topic!r} still has no partitions 10 s after creation; is the broker healthy?")
