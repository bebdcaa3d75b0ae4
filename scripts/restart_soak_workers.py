"""Restart a kept soak's two workers together from their local state, twice, and print how
long each took to answer `GET /ready` (with INFO logs appended to the run's worker logs).

    python scripts/restart_soak_workers.py .cache/soak/<run id> [--partitions 8] [--with-deliverer]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from app.tools.fleet import Deployment, Fleet


async def main(root: Path, partitions: int, with_deliverer: bool) -> None:
    fleet = Fleet(Deployment.create(f"soak-{root.name}", root, partitions, {"TIDEMAIL_LOG_LEVEL": "info"}))
    if with_deliverer:
        for member in (fleet.start_sink(), fleet.start_deliverer()):
            await fleet.wait_ready(member, timeout=120)
    try:
        for attempt in range(2):
            started = time.monotonic()
            workers = [fleet.start_worker(n) for n in (1, 2)]
            each = await asyncio.gather(*(fleet.wait_ready(worker, timeout=300) for worker in workers))
            both = time.monotonic() - started
            print(f"restart {attempt + 1}: both ready in {both:.1f} s ({each[0]:.1f}, {each[1]:.1f})")
            fleet.stop("worker-1", "worker-2")
    finally:
        fleet.stop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the soak's directory, kept with `tidemail soak --keep`")
    parser.add_argument("--partitions", type=int, default=8, help="as the soak was run with")
    parser.add_argument("--with-deliverer", action="store_true", help="start the deliverer and SMTP sink too")
    args = parser.parse_args()
    asyncio.run(main(args.root, args.partitions, args.with_deliverer))
