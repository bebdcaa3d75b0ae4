from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.settings import Settings
from streams.content import EmailRenderer
from streams.errors import ConfigError, RenderError

TEMPLATES = Settings().templates_dir


@pytest.fixture
def renderer() -> EmailRenderer:
    return EmailRenderer(TEMPLATES, defaults={"brand": "Shop"})


@pytest.fixture
def library(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    return copy


def test_welcome_greets_by_name_in_every_part(renderer: EmailRenderer) -> None:
    email = renderer.render("welcome", {"first_name": "Ann", "unsubscribe_url": "https://u/x"})
    assert email.subject == "Welcome to Shop, Ann!"
    assert "Hi Ann," in email.html and "Hi Ann," in email.text
    assert "https://u/x" in email.html and "https://u/x" in email.text
    assert email.template == "welcome" and len(email.template_version) == 12


def test_missing_name_falls_back_gracefully(renderer: EmailRenderer) -> None:
    email = renderer.render("welcome", {})
    assert email.subject == "Welcome to Shop!"
    assert "Hi there," in email.html and "Hi there," in email.text


def test_interest_shapes_the_preheader(renderer: EmailRenderer) -> None:
    assert (
        renderer.render("welcome", {"top_interest": "outdoor"}).preheader == "Fresh picks in outdoor, chosen for you."
    )


def test_html_injection_through_a_name_is_escaped(renderer: EmailRenderer) -> None:
    email = renderer.render("welcome", {"first_name": "<script>alert(1)</script>"})
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html


def test_sandbox_refuses_reaching_into_python(library: Path) -> None:
    (library / "emails/welcome/subject.txt.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    renderer = EmailRenderer(library, defaults={})
    with pytest.raises(RenderError, match="unsafe"):
        renderer.render("welcome", {})


def test_syntax_error_stops_start_up_with_file_and_line(library: Path) -> None:
    (library / "emails/welcome/body.txt.j2").write_text("line one\n{% if %}\n")
    with pytest.raises(ConfigError, match=r"emails/welcome/body.txt.j2:2: "):
        EmailRenderer(library, defaults={})


def test_missing_part_stops_start_up(library: Path) -> None:
    (library / "emails/welcome/preheader.txt.j2").unlink()
    with pytest.raises(ConfigError, match=r"template 'welcome' is missing emails/welcome/preheader\.txt\.j2"):
        EmailRenderer(library, defaults={})


def test_failure_at_render_time_names_template_and_version(library: Path) -> None:
    (library / "emails/welcome/subject.txt.j2").write_text("{{ 1 / 0 }}")
    renderer = EmailRenderer(library, defaults={})
    with pytest.raises(RenderError, match=r"template 'welcome' \([0-9a-f]{12}\) failed: ZeroDivisionError"):
        renderer.render("welcome", {})


def test_version_changes_when_an_included_block_changes(library: Path) -> None:
    before = EmailRenderer(library, defaults={}).versions["welcome"]
    footer = library / "blocks/footer.html.j2"
    footer.write_text(footer.read_text() + "<!-- changed -->")
    assert EmailRenderer(library, defaults={}).versions["welcome"] != before
