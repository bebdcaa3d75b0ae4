"""`tidemail erase` refuses an id the event contract refuses before it reaches for the broker
(the integration test publishes through it)."""

from __future__ import annotations

from click.testing import CliRunner

from app.cli import main


def test_erase_refuses_an_id_the_event_contract_refuses_without_publishing() -> None:
    # An unreachable broker: reaching for it would fail differently, after a timeout.
    env = {"TIDEMAIL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = CliRunner().invoke(main, ["erase", "x" * 201], env=env)
    assert result.exit_code == 2
    assert "`user_id` must be a non-empty string of at most 200 characters" in result.output
