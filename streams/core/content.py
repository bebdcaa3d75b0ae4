"""Email content: compile the template library once, render subject, preheader, HTML and text.

Templates are compiled in two phases when the library loads:

1. *Assembly*, with `[% ... %]` and `[[ ... ]]`: layouts, blocks and macros are put
   together into one flat template per part. For the HTML part that is an MJML
   document, which MRML (the Rust MJML compiler) turns into responsive HTML here, once.
2. *Rendering*, with the usual `{% ... %}` and `{{ ... }}`, per job: the flat
   template runs against one user's context.

Both phases run in Jinja2's sandbox because marketers author the templates; the HTML
part is autoescaped so user data such as a first name can never inject markup.
Start-up refuses a library with a syntax error, MJML error or a reference to a
field the context does not have, naming file and line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import mrml
from jinja2 import BaseLoader, FileSystemLoader, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from streams.core.errors import ConfigError, RenderError

PART_FILES: Final = {
    "subject": "subject.txt.j2",
    "preheader": "preheader.txt.j2",
    "html": "body.mjml.j2",
    "text": "body.txt.j2",
}
SHARED_DIRS: Final = ("layouts", "blocks")
ASSEMBLY_SYNTAX: Final = {
    "block_start_string": "[%",
    "block_end_string": "%]",
    "variable_start_string": "[[",
    "variable_end_string": "]]",
    "comment_start_string": "[#",
    "comment_end_string": "#]",
}
_WHITESPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n\s*\n")

# What every template sees. Documented in docs/content.md; anything else a template names
# stops start-up, so a typo cannot silently render as an empty string.
CONTEXT: Final[dict[str, str]] = {
    "user_id": "the user's id",
    "first_name": "first name, or None",
    "email": "the address the email goes to",
    "locale": "locale such as `en-GB`, or None",
    "country": "ISO country code such as `GB`, or None",
    "device": "last device seen: `mobile`, `desktop`, `tablet`, or None",
    "traits": "every profile trait, as a mapping",
    "segments": "names of the segments the user is in, as a list",
    "engagement": "`high`, `moderate`, `lapsed` or `new`, from the engagement segments",
    "interests": "up to three strongest category interests, strongest first",
    "top_interest": "the strongest category interest, or None",
    "cart": "the open cart (`cart_id`, `items` list of sku, name, category, price, quantity), or None",
    "recent_purchases": "recent orders (`order_id`, `skus`, `total`, `currency`, `at_ms`), oldest first",
    "recommendations": "products picked for this user (sku, name, category, price, url, reason); may be empty",
    "popular": "the most popular products right now (same fields); may be empty",
    "flow": "the flow sending this email, or None in a preview",
    "step": "the step of that flow, or None",
    "variant": "the variant an experiment's bandit chose for this email, or None",
    "brand": "the shop's name",
    "shop_url": "the shop's home page",
    "postal_address": "the sender's postal address (required in marketing email)",
    "unsubscribe_url": "this user's signed one-click unsubscribe link",
    "subject": "the rendered subject (in preheader and body parts)",
    "preheader": "the rendered preheader (in body parts)",
}


# Fields a template may iterate or index are never missing: an absent list renders as
# an empty one. The rest default to None, which a template can test with `{% if %}`.
_EMPTY: Final[dict[str, Any]] = dict.fromkeys(CONTEXT) | {
    "traits": {},
    "segments": [],
    "interests": [],
    "recent_purchases": [],
    "recommendations": [],
    "popular": [],
}


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
        self._dir = templates_dir
        loader = FileSystemLoader(str(templates_dir))
        trim: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True}
        # Keeping a block's last newline keeps included lines apart in the text part.
        self._assembly_env = SandboxedEnvironment(loader=loader, keep_trailing_newline=True, **ASSEMBLY_SYNTAX, **trim)
        self._html_env = SandboxedEnvironment(loader=_NoIncludes(), autoescape=True, **trim)
        self._text_env = SandboxedEnvironment(loader=_NoIncludes(), autoescape=False, **trim)
        self._defaults = dict(defaults)
        self._known = {*CONTEXT, *self._defaults, *self._html_env.globals}
        emails_dir = templates_dir / "emails"
        if not emails_dir.is_dir():
            raise ConfigError(f"no email templates found under {emails_dir}")
        self._emails = {path.name: self._compile(path.name) for path in sorted(emails_dir.iterdir()) if path.is_dir()}
        if not self._emails:
            raise ConfigError(f"no email templates found under {emails_dir}")

    @property
    def versions(self) -> dict[str, str]:
        return {name: email.version for name, email in self._emails.items()}

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render every part of email `name`; raise `RenderError` if any part fails."""
        email = self._emails.get(name)
        if email is None:
            raise RenderError(f"unknown template {name!r}; known: {', '.join(sorted(self._emails))}")
        values = {**_EMPTY, **self._defaults, **context}
        try:
            subject = _one_line(email.parts["subject"].render(values))
            values["subject"] = subject
            preheader = _one_line(email.parts["preheader"].render(values))
            values["preheader"] = preheader
            html = email.parts["html"].render(values)
            text = _BLANK_LINES.sub("\n\n", email.parts["text"].render(values)).strip() + "\n"
        except TemplateError as e:
            raise RenderError(f"template {name!r} ({email.version}) failed: {e}") from e
        except Exception as e:  # a filter or test in a template may raise anything
            raise RenderError(f"template {name!r} ({email.version}) failed: {type(e).__name__}: {e}") from e
        return RenderedEmail(name, email.version, subject, preheader, html, text)

    def render_mjml(self, name: str, context: Mapping[str, Any]) -> Callable[[], str]:
        """A function rendering the HTML part's MJML, not yet compiled to HTML, for this
        context: what rendering would cost if MJML were compiled per email (benchmarks)."""
        template = self._html_env.from_string(self._assemble(f"emails/{name}/{PART_FILES['html']}"))
        values = {**_EMPTY, **self._defaults, **context}
        return lambda: template.render(values)

    def _compile(self, name: str) -> _CompiledEmail:
        parts: dict[str, Template] = {}
        for part, filename in PART_FILES.items():
            relative = f"emails/{name}/{filename}"
            if not (self._dir / relative).is_file():
                raise ConfigError(f"template {name!r} is missing {relative}")
            flat = self._assemble(relative)
            if part == "html":
                flat = _compile_mjml(flat, relative)
            env = self._html_env if part == "html" else self._text_env
            try:
                parts[part] = env.from_string(flat)
            except TemplateSyntaxError as e:  # e.g. compiled CSS that reads as Jinja syntax
                raise ConfigError(f"{relative} (as compiled):{e.lineno}: {e.message}") from e
        return _CompiledEmail(_version_of(self._dir, name), parts)

    def _assemble(self, relative: str) -> str:
        """The part with its layout and blocks put in, checked as the renderer will see it."""
        try:
            template = self._assembly_env.get_template(relative)
            sources = [relative, *_referenced(self._assembly_env, relative)]
            for source in sources:
                # Render-phase syntax, checked per file so that errors point at the right line.
                self._text_env.parse(self._read(source), source, source)
            flat = template.render()
            tree = self._text_env.parse(flat)
        except TemplateSyntaxError as e:
            raise ConfigError(f"{e.filename or e.name or relative}:{e.lineno}: {e.message}") from e
        except TemplateError as e:
            raise ConfigError(f"{relative}: {e}") from e
        unknown = sorted(meta.find_undeclared_variables(tree) - self._known)
        if unknown:
            where = _first_use(self._text_env, sources, unknown[0], self._read) or relative
            raise ConfigError(
                f"{where}: unknown context field `{unknown[0]}`; templates can use: {', '.join(sorted(CONTEXT))}"
            )
        return flat

    def _read(self, relative: str) -> str:
        return (self._dir / relative).read_text()


class _NoIncludes(BaseLoader):
    """Render-phase templates are flat: layouts and blocks were put in at assembly."""

    def get_source(self, environment: Any, template: str) -> Any:
        raise TemplateError(f"`{template}` can only be included with [% include %] (at assembly)")


def _referenced(env: SandboxedEnvironment, relative: str) -> list[str]:
    """Every layout and block `relative` pulls in, directly or through another."""
    found: list[str] = []
    pending = [relative]
    while pending:
        source = env.loader.get_source(env, pending.pop())[0]  # type: ignore[union-attr]
        for name in meta.find_referenced_templates(env.parse(source)):
            if name is not None and name not in found and name != relative:
                found.append(name)
                pending.append(name)
    return found


def _first_use(env: SandboxedEnvironment, sources: list[str], name: str, read: Any) -> str | None:
    for source in sources:
        for node in env.parse(read(source)).find_all(nodes.Name):
            if node.name == name and node.ctx == "load":
                return f"{source}:{node.lineno}"
    return None


def _compile_mjml(document: str, relative: str) -> str:
    try:
        output = mrml.to_html(document)
    except Exception as e:  # MRML raises its own error types for invalid documents
        raise ConfigError(f"{relative}: not valid MJML: {e}") from e
    html: str = output.content
    return html


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
