"""Python functions generated from conditions, the way Jinja2 compiles a template.

Segment evaluation runs after every event. Walked as a tree of condition objects, a
plan of a dozen segments spends more time in calls, loops and tuples than in the
conditions themselves; written out as one function (every condition inline, constants
as literals) the same evaluation costs about half (a cart event's plan of nine segments:
3.9 -> 1.9 us). Conditions write their own code
(`Condition.emit`), so a new kind of condition is still one class in one place.
"""

from __future__ import annotations

import itertools
import linecache
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Code:
    """The body of one generated function: indented lines, fresh local names, and the
    values too rich to write as literals, bound as globals of the function."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 1
        self._counter = itertools.count()
        self.constants: dict[str, Any] = {}

    def fresh(self, stem: str) -> str:
        """A local name no other part of the function uses."""
        return f"{stem}_{next(self._counter)}"

    def constant(self, value: Any) -> str:
        """A name bound to `value` when the function is built."""
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def write(self, text: str) -> None:
        """Add statements (a dedented, possibly multi-line string) at the current depth."""
        for line in textwrap.dedent(text).strip("\n").splitlines():
            self._lines.append("    " * self._depth + line)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """Statements written inside the `with` go in the block that `header` opens."""
        self.write(header)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def build(self, name: str, parameters: str) -> Callable[..., Any]:
        """The function `def name(parameters)` with the statements written so far as its body."""
        source = f"def {name}({parameters}):\n" + "\n".join(self._lines or ["    pass"]) + "\n"
        filename = f"<tidemail {name} {id(self):x}>"
        namespace = dict(self.constants)
        exec(compile(source, filename, "exec"), namespace)
        # Tracebacks through generated code show its lines, as with dataclasses' methods.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        function: Callable[..., Any] = namespace[name]
        return function


def literal(value: int | str | bool | None) -> str:
    """A value written into generated code as it is (ints, text, flags)."""
    if not isinstance(value, int | str | bool | None):
        raise TypeError(f"not a literal: {value!r}")
    return repr(value)
