"""Fails when a module or a function outgrows what one reader can hold in mind.

Run by `make check`. A module over MAX_MODULE_LINES or a function over
MAX_FUNCTION_LINES (its `def` line to its last line, decorators and docstring
included) is a sign to split by concept (see ../shared/STYLE.md).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
PACKAGES = ("app", "streams", "models")


def oversized(path: Path) -> list[str]:
    source = path.read_text()
    found = []
    lines = source.count("\n")
    if lines > MAX_MODULE_LINES:
        found.append(f"{path}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path}:{node.lineno}: {node.name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    return found


def main(root: Path) -> int:
    found = [
        problem
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
        for problem in oversized(path)
    ]
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")))
