from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.settings import Settings
from app.tools.common import deployment_env, get_json, keep_pace, launch, poll_until, stop_processes, wait_until


async def test_polling_returns_the_first_ready_answer_or_names_what_it_waited_for() -> None:
    answers = iter([None, {"n": 1}, {"n": 2}, {"n": 3}])

    async def probe() -> dict[str, int] | None:
        return next(answers, {"n": 3})

    assert await wait_until(probe, lambda a: a["n"] >= 2, 5, "two") == {"n": 2}
    with pytest.raises(TimeoutError, match=r"timed out after 0\.2s waiting for ten"):
        await wait_until(probe, lambda a: a["n"] >= 10, 0.2, "ten")
    # Without a name, time running out returns the last answer, ready or not.
    assert await poll_until(probe, lambda a: a["n"] >= 10, 0.2) == {"n": 3}


async def test_json_comes_only_from_a_200_answer() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"processed": 7})

    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=404)

    app = web.Application()
    app.router.add_get("/stats", ok)
    app.router.add_get("/missing", missing)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        stats = str(server.make_url("/stats"))
        assert await get_json(http, stats) == {"processed": 7}
        assert await get_json(http, str(server.make_url("/missing"))) is None
    async with aiohttp.ClientSession() as http:
        # The server is gone: no answer reads as None, not as an error.
        assert await get_json(http, stats) is None


async def test_pacing_waits_until_the_messages_sent_are_due() -> None:
    started = time.monotonic()
    await keep_pace(10, rate=100, started=started)
    assert time.monotonic() - started >= 0.1
    before = time.monotonic()
    await keep_pace(1, rate=100, started=started - 5)
    assert time.monotonic() - before < 0.05


def test_launched_processes_log_to_their_file_and_stop(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    code = "import sys, time; print('up', flush=True); time.sleep(60)"
    process = launch([sys.executable, "-c", code], log)
    deadline = time.monotonic() + 10
    while "up" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_processes([process])
    assert process.returncode is not None
    assert log.read_text() == "up\n"


def test_a_benchmark_deployment_leaves_no_shared_topic_behind_with_its_partition_count() -> None:
    env = deployment_env("r1", "segments", partitions=4, web_port=0)
    ours, shipped = Settings.from_env(env), Settings()
    topics = [f.name for f in dataclasses.fields(Settings) if f.name.endswith("_topic")]
    assert "erasures_topic" in topics
    assert [name for name in topics if getattr(ours, name) == getattr(shipped, name)] == []
