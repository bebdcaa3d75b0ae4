"""GET /users/{id} over two workers: errors, and p50/p99 of the requests the asked worker
answers itself against those it forwards to the owner (see app/tools/any_worker_bench.py).

    .venv/bin/python scripts/bench_any_worker.py [--requests 10000] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.tools.any_worker_bench import RATE, report_any_worker, run_any_worker_bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=RATE, help="requests per second, sent open-loop")
    args = parser.parse_args()
    print(report_any_worker(asyncio.run(run_any_worker_bench(args.requests, args.rate))))


if __name__ == "__main__":
    main()
