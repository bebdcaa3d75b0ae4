"""Two real workers: either one answers for every user (forwarding to the owner), GET
/segments gives the fleet's sizes whichever is asked, and a forwarded request goes no further."""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.api.forwarding import ANSWERED_BY, FORWARDED_BY
from app.tools.generator import EventGenerator
from tests.integration.harness import PARTITIONS, WorkerHarness, delete_deployment, ensure_all_topics, produce

pytestmark = pytest.mark.integration


async def both_own_their_share(workers: list[WorkerHarness]) -> list[set[int]]:
    """Each worker's partitions, once the two of them own all of them between them."""
    for _ in range(300):
        owned = [set((await worker.get("/health"))[1]["owned_partitions"]) for worker in workers]
        if all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == set(range(PARTITIONS)):
            return owned
        await asyncio.sleep(0.2)
    raise AssertionError(f"the partitions were not shared out: {owned}")


async def profiles(http: aiohttp.ClientSession, worker: WorkerHarness, users: list[str]) -> dict[str, Any]:
    found = {}
    for user in users:
        async with http.get(f"{worker.url}/users/{user}") as response:
            assert response.status == 200, (worker.url, user, await response.text())
            found[user] = (response.headers.get(ANSWERED_BY), await response.json())
    return found


async def test_either_worker_answers_for_every_user_and_gives_the_fleets_segment_sizes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = WorkerHarness(tmp_path / "a")
    second = first.sibling(tmp_path / "b")
    workers = [first, second]
    s = first.settings
    try:
        await ensure_all_topics(s)
        messages = list(islice(EventGenerator(users=300, seed=4).messages(), 3_000))
        users = sorted({key.decode() for key, _ in messages})
        await first.start()
        await second.start()
        await produce(s.kafka_bootstrap, s.events_topic, messages)
        await first.wait_until_caught_up()
        owned = await both_own_their_share(workers)

        async with aiohttp.ClientSession(headers=first.headers) as http:
            answers = [await profiles(http, worker, users) for worker in workers]
            for user in users:
                (by_first, seen_first), (by_second, seen_second) = answers[0][user], answers[1][user]
                assert seen_first == seen_second
                # Answered where the user lives, forwarded from the other worker.
                owner = 0 if seen_first["partition"] in owned[0] else 1
                assert (by_first, by_second) == ((None, first.url) if owner == 0 else (second.url, None))

            members = Counter(name for _, profile in answers[0].values() for name in profile["segments"])
            for worker in workers:
                async with http.get(f"{worker.url}/segments") as response:
                    fleet = await response.json()
                assert fleet["complete"] and [w["answered"] for w in fleet["workers"]] == [True, True]
                assert {seg["name"]: seg["size"] for seg in fleet["segments"] if seg["size"]} == dict(members)

            theirs = next(user for user in users if answers[0][user][1]["partition"] in owned[1])
            headers = {FORWARDED_BY: second.url}
            async with http.get(f"{first.url}/users/{theirs}", headers=headers) as response:
                assert response.status == 421
    finally:
        for worker in workers:
            worker.stop()
        await delete_deployment(s)
