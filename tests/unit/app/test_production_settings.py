"""TIDEMAIL_ENV=production: the worker refuses development secrets and missing tokens, and no
process moves its clock; development runs with the defaults."""

from __future__ import annotations

import pytest

from app.settings import Settings
from streams.core.errors import ConfigError

OWN = {
    "TIDEMAIL_ENV": "production",
    "TIDEMAIL_UNSUBSCRIBE_SECRET": "a-secret-of-our-own-0123",
    "TIDEMAIL_API_TOKENS": "api-token-0123456789,api-token-9876543210",
    "TIDEMAIL_ADMIN_TOKENS": "admin-token-0123456789",
}


def test_development_serves_with_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.env == "development"
    settings.check_api_secrets()


def test_production_serves_with_its_own_secret_and_tokens() -> None:
    settings = Settings.from_env(OWN)
    settings.check_api_secrets()
    assert settings.api_bearer_tokens == ("api-token-0123456789", "api-token-9876543210")


def test_production_refuses_the_defaults_naming_each_problem_on_one_line() -> None:
    settings = Settings.from_env({"TIDEMAIL_ENV": "production"})
    with pytest.raises(ConfigError) as refused:
        settings.check_api_secrets()
    assert str(refused.value) == (
        "TIDEMAIL_ENV=production refuses to start: "
        "TIDEMAIL_UNSUBSCRIBE_SECRET must be your own, of at least 16 characters; "
        "TIDEMAIL_API_TOKENS must list tokens of at least 16 characters; "
        "TIDEMAIL_ADMIN_TOKENS must list tokens of at least 16 characters"
    )


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("TIDEMAIL_UNSUBSCRIBE_SECRET", "dev-only-unsubscribe-secret-change-me", "TIDEMAIL_UNSUBSCRIBE_SECRET"),
        ("TIDEMAIL_UNSUBSCRIBE_SECRET", "short", "TIDEMAIL_UNSUBSCRIBE_SECRET"),
        ("TIDEMAIL_API_TOKENS", " , ", "TIDEMAIL_API_TOKENS"),
        ("TIDEMAIL_API_TOKENS", "api-token-0123456789,short", "TIDEMAIL_API_TOKENS"),
        ("TIDEMAIL_ADMIN_TOKENS", "", "TIDEMAIL_ADMIN_TOKENS"),
    ],
)
def test_production_refuses_each_weak_secret(name: str, value: str, problem: str) -> None:
    settings = Settings.from_env(OWN | {name: value})
    with pytest.raises(ConfigError, match=f"refuses to start: {problem} must"):
        settings.check_api_secrets()


def test_production_refuses_clock_control_in_every_process() -> None:
    with pytest.raises(ConfigError, match="TIDEMAIL_ALLOW_CLOCK_CONTROL must be false with TIDEMAIL_ENV=production"):
        Settings.from_env(OWN | {"TIDEMAIL_ALLOW_CLOCK_CONTROL": "true"})


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="TIDEMAIL_ENV must be one of development, production; got 'prod'"):
        Settings.from_env({"TIDEMAIL_ENV": "prod"})
