"""`python -m app.tools.dashboards [--check]`: write the dashboards' JSON, or check it is current."""

from __future__ import annotations

import sys

from app.tools.dashboards import DASHBOARDS_DIR, stale, write


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        differing = stale()
        if differing:
            print(f"out of date in {DASHBOARDS_DIR}: {', '.join(differing)}; run python -m app.tools.dashboards")
            return 1
        return 0
    if argv:
        print("usage: python -m app.tools.dashboards [--check]", file=sys.stderr)
        return 2
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
