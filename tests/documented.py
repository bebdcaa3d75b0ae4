"""The examples the README and docs/ show, read back so tests can hold them to the contracts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def fenced_json(path: Path, heading: str) -> list[dict[str, Any]]:
    """The documents in the fenced JSON blocks of the section under `heading`, up to the
    next heading of the same or a higher level (a `#` line inside a fence is no heading)."""
    level = len(heading.split(" ", 1)[0])
    lines = path.read_text().splitlines()
    blocks: list[list[str]] = []
    fence: list[str] | None = None  # the lines of the JSON block being read
    in_other_fence = False
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("```"):
            if fence is not None:
                blocks.append(fence)
                fence = None
            elif line in ("```json", "```jsonc"):
                fence = []
            else:
                in_other_fence = not in_other_fence
        elif fence is not None:
            fence.append(line)
        elif not in_other_fence and line.startswith("#") and len(line.split(" ", 1)[0]) <= level:
            break
    return [doc for block in blocks for doc in _documents("\n".join(block))]


def _documents(text: str) -> list[dict[str, Any]]:
    # `// ...` comments follow whitespace; `://` in a URL does not.
    text = re.sub(r"\s//.*", "", text).strip()
    docs: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:].strip()
    return docs
