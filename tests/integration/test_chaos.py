"""A short chaos run: the world under kill -9 of workers and the deliverer and a worker paused
past its session timeout, then the verifier against one pass of the pure core (`make chaos`
runs the full world and every fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tools.chaos import ChaosPlan, run_chaos
from app.tools.chaos_faults import FaultCounts

pytestmark = pytest.mark.integration

FAULTS = FaultCounts(worker_kills=2, deliverer_kills=1, trainer_kills=0, broker_kills=0, redis_kills=0, worker_pauses=1)


@pytest.mark.timeout(420)
async def test_under_kills_and_a_paused_worker_every_record_is_there_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without the CRM sync: in 60,000 events the shop's traffic is what makes jobs, emails and erasures.
    plan = ChaosPlan(users=50_000, events=60_000, rate=1_000, partitions=4, faults=FAULTS, crm_sync=False)
    # The run's directory (each process's log, the broker's data) stays in pytest's temporary
    # directories, which keep the last three sessions: a failure can be read afterwards.
    verdict = await run_chaos(plan, tmp_path / "chaos", keep=True)
    output = capsys.readouterr().out
    assert verdict.ok, f"{output}\nlogs and broker data: {tmp_path / 'chaos'}"
    assert output.count(" fault ") == 4, output
    assert "ALL-RECORDS-VERIFIED" in output.splitlines()[-1]
    # The world must exercise what is verified: jobs, emails, erased users' emails held back.
    assert verdict.jobs > 100 and verdict.emails > 100, output
    assert "0 withheld" not in output, output
