from __future__ import annotations

import socket

from click.testing import CliRunner

from app.cli import main


def test_version_names_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("tidemail 0.")


def test_worker_help_lists_the_faust_options_it_passes_through() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    assert "Faust worker options (passed through)" in result.output
    assert "--web-port" in result.output and "--without-web" in result.output
    # Set from TIDEMAIL_LOG_LEVEL, so not offered as a pass-through.
    assert "--loglevel" not in result.output


def test_preview_without_a_worker_says_so_and_how_to_start_one() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    result = CliRunner().invoke(main, ["preview", "welcome_1", "--worker-url", url])
    assert result.exit_code == 1
    assert f"Error: no worker answers at {url}" in result.output
    assert "Traceback" not in result.output and result.exception is not None
