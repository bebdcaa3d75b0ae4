"""A real worker's API: bearer tokens, admin tokens, no Faust pages, this machine only."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import WorkerHarness

pytestmark = pytest.mark.integration

LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """The addresses sockets listen on at `port`, as /proc/net/tcp and tcp6 write them."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == LISTEN and int(hex_port, 16) == port:
                found.add(address)
    return found


async def test_the_api_takes_an_api_token_and_its_admin_routes_an_admin_token(worker: WorkerHarness) -> None:
    await worker.start()
    api = {"Authorization": f"Bearer {worker.settings.api_bearer_tokens[0]}"}
    admin = worker.headers
    async with aiohttp.ClientSession(base_url=worker.url) as http:
        async with http.get("/stats") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="tidemail"'
        async with http.get("/stats", headers={"Authorization": "Bearer guessed-0123456789"}) as response:
            assert response.status == 401
        async with http.get("/stats", headers=api) as response:
            assert response.status == 200
        for path in ("/stats/reset", "/admin/clock"):
            async with http.post(path, headers=api, json={"advance_ms": 1}) as response:
                assert response.status == 403
            async with http.post(path, headers=admin, json={"advance_ms": 1}) as response:
                assert response.status == 200
        async with http.get("/health") as response:
            assert response.status == 200
        async with http.get("/metrics") as response:
            metrics = await response.text()
    assert 'tidemail_api_refusals_total{reason="no_token"} 1.0' in metrics
    assert 'tidemail_api_refusals_total{reason="bad_token"} 1.0' in metrics
    assert 'tidemail_api_refusals_total{reason="not_admin"} 2.0' in metrics


async def test_faust_serves_no_table_data_and_the_worker_listens_on_this_machine_only(worker: WorkerHarness) -> None:
    await worker.start()
    for path in ("/table/users", "/table/users/u1", "/table/", "/router/", "/graph/", "/assignment/"):
        status, _ = await worker.text(path)
        assert status == 404, path
    assert listening_addresses(worker.port) == {"0100007F"}  # 127.0.0.1
