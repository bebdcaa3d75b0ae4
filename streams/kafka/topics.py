"""Creating Tidemail's topics and checking they are co-partitioned with the tables."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from streams.core.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

# Between attempts to reach the broker: doubling from the first, up to the last.
RETRY_DELAYS_S = (0.5, 5.0)


async def wait_for_broker(bootstrap: str, wait_s: float) -> None:
    """Return once the broker at `bootstrap` answers; raise `ServiceUnavailable` after `wait_s`.

    A process started while the broker restarts waits for it rather than failing at once."""
    deadline = time.monotonic() + wait_s
    delay, attempt = RETRY_DELAYS_S[0], 1
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
        except KafkaConnectionError as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceUnavailable(
                    f"Kafka at {bootstrap} (TIDEMAIL_KAFKA_BOOTSTRAP) did not answer in {wait_s:g} s "
                    f"(TIDEMAIL_KAFKA_STARTUP_WAIT_S): {e}"
                ) from e
            log.warning(
                "Kafka at %s does not answer (attempt %d); trying again for %.0f s more", bootstrap, attempt, left
            )
            await asyncio.sleep(min(delay, left))
            delay, attempt = min(delay * 2, RETRY_DELAYS_S[1]), attempt + 1
        else:
            await admin.close()
            return


async def ensure_topics(
    bootstrap: str, partitions: int, replication: int, names: list[str], configs: dict[str, str] | None = None
) -> None:
    """Create missing topics; refuse to run when one has another partition count.

    Every topic the hot path reads or writes is partitioned like the `users` table: a
    user's events, state and outputs all live in the same partition number.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        topic_configs = configs or {}
        missing = [NewTopic(name, partitions, replication, topic_configs=topic_configs) for name in names]
        missing = [topic for topic in missing if topic.name not in existing]
        if missing:
            await admin.create_topics(missing)
        for name in names:
            found = await _partition_count(admin, name)
            if found != partitions:
                raise ConfigError(
                    f"topic {name!r} has {found} partitions but TIDEMAIL_PARTITIONS is {partitions}; they must "
                    "match so a user's events, state and outputs share a partition number"
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
