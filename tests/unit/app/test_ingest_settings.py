"""What `tidemail ingest` is configured with: write keys from TIDEMAIL_WRITE_KEYS, kept out of reprs."""

from __future__ import annotations

from app.settings import Settings


def test_write_keys_are_comma_separated_and_never_shown() -> None:
    settings = Settings.from_env({"TIDEMAIL_WRITE_KEYS": " wk-old-123, wk-new-456 ,", "TIDEMAIL_INGEST_PORT": "7070"})
    config = settings.ingest
    assert config.write_keys == ("wk-old-123", "wk-new-456")
    assert (config.host, config.port, config.events_topic) == ("127.0.0.1", 7070, "tidemail.events")
    assert "wk-" not in repr(config) + repr(settings)


def test_no_write_keys_by_default() -> None:
    assert Settings().ingest.write_keys == ()
