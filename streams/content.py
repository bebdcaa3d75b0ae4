"""Email content: compile the template library once, render subject, preheader, HTML and text.

Templates run in Jinja2's sandbox because marketers author them; HTML parts are
autoescaped so user data such as a first name can never inject markup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from jinja2 import FileSystemLoader, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from streams.errors import ConfigError, RenderError

PART_FILES: Final = {
    "subject": "subject.txt.j2",
    "preheader": "preheader.txt.j2",
    "html": "body.html.j2",
    "text": "body.txt.j2",
}
SHARED_DIRS: Final = ("layouts", "blocks")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    template: str
    template_version: str
    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class _CompiledEmail:
    version: str
    parts: dict[str, Template]


class EmailRenderer:
    """The compiled template library under `templates_dir/emails/<name>/`."""

    def __init__(self, templates_dir: Path, defaults: Mapping[str, Any]) -> None:
        loader = FileSystemLoader(str(templates_dir))
        options: dict[str, Any] = {"loader": loader, "trim_blocks": True, "lstrip_blocks": True}
        self._html_env = SandboxedEnvironment(autoescape=True, **options)
        self._text_env = SandboxedEnvironment(autoescape=False, **options)
        self._defaults = dict(defaults)
        self._emails = {
            path.name: self._compile(templates_dir, path.name)
            for path in sorted((templates_dir / "emails").iterdir())
            if path.is_dir()
        }
        if not self._emails:
            raise ConfigError(f"no email templates found under {templates_dir / 'emails'}")

    @property
    def versions(self) -> dict[str, str]:
        return {name: email.version for name, email in self._emails.items()}

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render every part of email `name`; raise `RenderError` if any part fails."""
        email = self._emails.get(name)
        if email is None:
            raise RenderError(f"unknown template {name!r}; known: {', '.join(sorted(self._emails))}")
        values = {**self._defaults, **context}
        try:
            subject = _one_line(email.parts["subject"].render(values))
            preheader = _one_line(email.parts["preheader"].render(values))
            values.update(subject=subject, preheader=preheader)
            html = email.parts["html"].render(values)
            text = email.parts["text"].render(values).strip() + "\n"
        except TemplateError as e:
            raise RenderError(f"template {name!r} ({email.version}) failed: {e}") from e
        except Exception as e:  # a filter or test in a template may raise anything
            raise RenderError(f"template {name!r} ({email.version}) failed: {type(e).__name__}: {e}") from e
        return RenderedEmail(name, email.version, subject, preheader, html, text)

    def _compile(self, templates_dir: Path, name: str) -> _CompiledEmail:
        parts: dict[str, Template] = {}
        for part, filename in PART_FILES.items():
            relative = f"emails/{name}/{filename}"
            if not (templates_dir / relative).is_file():
                raise ConfigError(f"template {name!r} is missing {relative}")
            env = self._html_env if part == "html" else self._text_env
            try:
                parts[part] = env.get_template(relative)
            except TemplateSyntaxError as e:
                raise ConfigError(f"{e.filename or relative}:{e.lineno}: {e.message}") from e
        return _CompiledEmail(_version_of(templates_dir, name), parts)


def _version_of(templates_dir: Path, name: str) -> str:
    """A hash over the email's own sources and every shared layout and block it may include."""
    digest = hashlib.sha256()
    sources = sorted((templates_dir / "emails" / name).glob("*.j2"))
    for shared in SHARED_DIRS:
        sources.extend(sorted((templates_dir / shared).glob("*.j2")))
    for path in sources:
        digest.update(path.relative_to(templates_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()
