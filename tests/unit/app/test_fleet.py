"""A fleet's deployment shares nothing with another, and its workers share nothing with each other."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from app.tools.fleet import Deployment, Fleet


def test_every_topic_and_the_group_carry_the_deployment_name(tmp_path: Path) -> None:
    settings = Deployment.create("soak-x", tmp_path, partitions=3).settings
    topics = [
        settings.events_topic,
        settings.jobs_topic,
        settings.dead_letter_topic,
        settings.erasures_topic,
        settings.segment_changes_topic,
        settings.interactions_topic,
        settings.item_model_topic,
        settings.catalog_topic,
        settings.deliveries_topic,
    ]
    assert all(topic.startswith("soak-x.") for topic in topics)
    assert len(set(topics)) == len(topics)
    assert (settings.app_id, settings.partitions) == ("soak-x", 3)


def test_workers_have_their_own_data_directory_and_port(tmp_path: Path) -> None:
    fleet = Fleet(Deployment.create("soak-x", tmp_path, partitions=3))
    first, second = fleet.worker(1), fleet.worker(2)
    assert first.data_dir != second.data_dir
    assert first.url != second.url
    assert fleet.worker(1) is first
    assert first.env["TIDEMAIL_WEB_PORT"] != second.env["TIDEMAIL_WEB_PORT"]


def test_cpu_time_and_memory_are_read_for_the_members_process(tmp_path: Path) -> None:
    fleet = Fleet(Deployment.create("soak-x", tmp_path, partitions=3))
    member = fleet.worker(1)
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ninput()"
    member.process = subprocess.Popen([sys.executable, "-c", busy], stdin=subprocess.PIPE)
    assert member.process.stdin is not None
    try:
        deadline = time.monotonic() + 10
        while fleet.cpu_seconds("worker-1") < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0.3 <= fleet.cpu_seconds("worker-1") < 5
        now, peak = fleet.rss_bytes("worker-1")
        assert 1 << 20 < now <= peak
    finally:
        member.process.stdin.close()
        member.process.kill()
        member.process.wait()
