"""A fleet's deployment shares nothing with another, and its workers share nothing with each other."""

from __future__ import annotations

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
