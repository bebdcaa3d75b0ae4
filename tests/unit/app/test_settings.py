from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.settings import Settings
from streams.core.errors import ConfigError


def test_defaults_suit_a_local_run() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.events_topic == "tidemail.events"


def test_environment_overrides_are_typed() -> None:
    settings = Settings.from_env(
        {"TIDEMAIL_PARTITIONS": "4", "TIDEMAIL_DATA_DIR": "/tmp/x", "TIDEMAIL_INTEREST_HALF_LIFE_DAYS": "7.5"}
    )
    assert settings.partitions == 4
    assert settings.data_dir == Path("/tmp/x")
    assert settings.interest_half_life_days == 7.5


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="TIDEMAIL_PARTITIONS must be a whole number; got 'many'"):
        Settings.from_env({"TIDEMAIL_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="TIDEMAIL_PARTITIONS must be at least 1; got 0"):
        Settings.from_env({"TIDEMAIL_PARTITIONS": "0"})


def test_secrets_do_not_leak_into_repr() -> None:
    settings = Settings.from_env({"TIDEMAIL_UNSUBSCRIBE_SECRET": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert settings.unsubscribe_secret.reveal() == "hunter2"


def test_the_deliverers_config_comes_from_settings_without_showing_the_password() -> None:
    settings = Settings.from_env(
        {"TIDEMAIL_SMTP_PASSWORD": "hunter2", "TIDEMAIL_SMTP_TLS": "starttls", "TIDEMAIL_DELIVERY_CONCURRENCY": "3"}
    )
    config = settings.delivery
    assert (config.smtp.tls, config.smtp.password, config.concurrency) == ("starttls", "hunter2", 3)
    assert (config.sender.address, config.sender.domain) == ("hello@shop.example.com", "shop.example.com")
    assert config.jobs_topic == settings.jobs_topic
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize("spelling", ["crit", "critical", "error", "warn", "warning", "info", "debug", "WARN"])
def test_every_documented_log_level_is_one_python_and_faust_both_take(spelling: str) -> None:
    from faust.cli.base import LOGLEVELS

    settings = Settings.from_env({"TIDEMAIL_LOG_LEVEL": spelling})
    assert isinstance(logging.getLevelName(settings.logging_level), int)
    assert settings.faust_log_level.upper() in LOGLEVELS


def test_an_unknown_log_level_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"TIDEMAIL_LOG_LEVEL must be one of debug, info, warn.*; got 'loud'"):
        Settings.from_env({"TIDEMAIL_LOG_LEVEL": "loud"})
