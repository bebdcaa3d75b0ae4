"""The engagement models' evaluation on planted signal, on small seeds."""

from __future__ import annotations

import pytest

from app.tools.eval_bandits import WINDOW, report_bandits, simulate_bandit
from app.tools.eval_engagement import (
    HEURISTICS,
    OFFLINE,
    OFFLINE_WITH_TRAITS,
    SEND_TIME_METHODS,
    SHIPPED,
    SHIPPED_SEND_TIME,
    EngagementEval,
    auc,
    evaluate_engagement,
    report_engagement,
)


def test_auc_counts_pairs_and_ties() -> None:
    assert auc([True, False, True, False], [0.9, 0.1, 0.8, 0.2]) == 1.0
    assert auc([True, False], [0.1, 0.9]) == 0.0
    assert auc([True, False, False], [0.5, 0.5, 0.1]) == 0.75


@pytest.fixture(scope="module")
def small_world() -> EngagementEval:
    return evaluate_engagement(users=400, days=40, seed=2, candidates={})


def test_propensity_learns_the_planted_signal_below_the_oracle(small_world: EngagementEval) -> None:
    aucs = small_world.propensity.aucs()
    assert set(aucs) == {"oracle (planted chance)", SHIPPED, *HEURISTICS}
    assert 0.6 < aucs[SHIPPED] < aucs["oracle (planted chance)"]
    assert sum(small_world.propensity.labels) > 100


def test_offline_fits_bound_the_online_learner(small_world: EngagementEval) -> None:
    """Knowing each user's planted traits adds what behaviour alone cannot show."""
    offline = small_world.propensity.offline_aucs()
    assert offline[OFFLINE_WITH_TRAITS] > offline[OFFLINE] > 0.6
    assert "knowing each user's planted buyer and spender" in report_engagement([small_world])


def test_send_time_finds_planted_hours_better_than_hours_of_the_week(small_world: EngagementEval) -> None:
    run = small_world.send_time
    assert run.users > 30 and set(run.within_an_hour) == set(SEND_TIME_METHODS)
    assert run.share(SHIPPED_SEND_TIME) >= 0.9
    assert run.share(SHIPPED_SEND_TIME) > run.share("previous release: hour of week")
    assert "targets, engagement" in report_engagement([small_world])


def test_thompson_sampling_settles_on_the_best_variant_despite_late_opens() -> None:
    run = simulate_bandit(seed=4, sends=3 * WINDOW)
    assert len(run.best_sends) == 3
    assert run.share_on_best(2) > run.share_on_best(0) and run.share_on_best(2) >= 0.8
    # Regret grows ever slower: the last window loses less than the first.
    assert run.regret[2] < run.regret[0]
    assert "share on best" in report_bandits([run])
