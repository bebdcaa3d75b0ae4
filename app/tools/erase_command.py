"""`tidemail erase USER_ID`: an operator's request to erase a user (GDPR article 17)."""

from __future__ import annotations

import asyncio
import time
import uuid

import click
import orjson
from aiokafka import AIOKafkaProducer

from app.settings import Settings
from streams.core.erasure import erase_event
from streams.core.errors import InvalidEvent
from streams.core.events import validate_event
from streams.kafka.topics import ensure_topics


@click.command()
@click.argument("user_id")
@click.option("--source", default="cli", show_default=True, help="Who asks; copied to the erasure record.")
def erase(user_id: str, source: str) -> None:
    """Erase USER_ID: publish an `erase` event to the events topic, keyed by the user id as
    every producer keys events. The worker owning the user erases their state, timers and
    cached predictions, and publishes an erasure record (TIDEMAIL_ERASURES_TOPIC) for the
    deliverer, the trainer and downstream systems."""
    settings = Settings.from_env()
    event = erase_event(user_id, f"erase-{uuid.uuid4()}", int(time.time() * 1000), source)
    try:
        validate_event(event, user_id.encode())
    except InvalidEvent as e:
        raise click.BadParameter(str(e)) from e
    asyncio.run(_publish(settings, user_id, orjson.dumps(event)))
    click.echo(f"erase of {user_id!r} published to {settings.events_topic} (event {event['event_id']})")


async def _publish(settings: Settings, user_id: str, value: bytes) -> None:
    # Created as the worker creates it, so the event lands on the partition the worker expects.
    await ensure_topics(
        settings.kafka_bootstrap, settings.partitions, settings.replication_factor, [settings.events_topic]
    )
    # aiokafka's default partitioner is murmur2 of the key, as the Java client's: the user's partition.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(settings.events_topic, value, key=user_id.encode())
    finally:
        await producer.stop()
