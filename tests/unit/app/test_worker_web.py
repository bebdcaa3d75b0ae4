"""The worker's web server listens where TIDEMAIL_WEB_HOST says (this machine by default)
and serves none of Faust's own pages."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from app.faust_app import canonical_url, create_app
from app.settings import Settings


@pytest.mark.parametrize(("host", "bind"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_the_worker_listens_on_web_host(tmp_path: Path, host: str | None, bind: str) -> None:
    settings = Settings.from_env({"TIDEMAIL_DATA_DIR": str(tmp_path)} | ({"TIDEMAIL_WEB_HOST": host} if host else {}))
    # Faust's own default is every interface.
    assert create_app(settings).conf.web_bind == bind


def test_faust_serves_no_tables_router_statistics_or_graph(tmp_path: Path) -> None:
    conf = create_app(Settings(data_dir=tmp_path)).conf
    assert not (conf.web_tables_enabled or conf.web_router_enabled or conf.web_stats_enabled or conf.web_graph_enabled)


def test_the_api_is_added_once_though_faust_initialises_its_web_server_twice(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    server: Any = SimpleNamespace(web_app=web.Application())
    app.on_webserver_init(server)
    routes = len(server.web_app.router.routes())
    app.on_webserver_init(server)
    assert len(server.web_app.router.routes()) == routes
    assert len(server.web_app.middlewares) == 3


def test_the_other_workers_reach_this_one_at_its_canonical_url(tmp_path: Path) -> None:
    assert canonical_url(Settings(web_port=6070)) == "http://127.0.0.1:6070"
    # Listening on every interface names no address: the machine's name does.
    assert canonical_url(Settings(web_host="0.0.0.0")) == f"http://{socket.gethostname()}:6066"
    assert canonical_url(Settings(web_host="0.0.0.0", canonical_url="http://w1:6066")) == "http://w1:6066"
    assert str(create_app(Settings(data_dir=tmp_path, web_port=6070)).conf.canonical_url) == "http://127.0.0.1:6070"


def test_no_standby_replicas_whose_per_record_reading_can_leave_holes(tmp_path: Path) -> None:
    # A takeover restores what its local copy lacks with a reader of its own (changelog_restore.py).
    assert create_app(Settings(data_dir=tmp_path)).conf.table_standby_replicas == 0
