"""Emitting one job request: each outcome's `Emission`, and what the state records."""

from __future__ import annotations

from app.settings import Settings
from models.bandits import HOLDOUT, BanditRecord, Experiment
from models.reco import ItemModel
from streams.core.content import EmailRenderer
from streams.core.emission import Emission, JobEmitter
from streams.core.flow_engine import JobRequest, job_id
from streams.core.governance import GovernancePolicy
from streams.core.state import UserState
from tests.factories import BASE_TS
from tests.unit.core.support import CONTEXT, OPEN_GOVERNANCE

REQUEST = JobRequest("welcome", 1, "welcome", "u1", "signup-u1", BASE_TS)
RENDERER = EmailRenderer(Settings().templates_dir, defaults={"brand": "Shop"})


def emitter(governance: GovernancePolicy = OPEN_GOVERNANCE) -> JobEmitter:
    return JobEmitter(RENDERER, CONTEXT, governance, lambda: BASE_TS)


def known(user_id: str = "u1") -> UserState:
    return UserState(user_id, traits={"email": f"{user_id}@example.com", "first_name": "Ann"})


def test_an_allowed_request_becomes_a_job_and_counts_against_the_caps() -> None:
    state, emission = emitter().emit(REQUEST, known(), ItemModel.empty(), {})
    assert emission.outcome == "allowed" and not emission.delayed
    assert emission.sent is None and emission.dead_letter is None
    assert emission.job is not None and emission.job["job_id"] == job_id("welcome", 1, "u1", "u1")
    assert state.marketing_sends == [BASE_TS]


def test_a_user_without_an_address_is_dead_lettered_and_an_opt_out_is_not() -> None:
    state, emission = emitter().emit(REQUEST, UserState("u1"), ItemModel.empty(), {})
    assert emission.outcome == "no_address" and emission.job is None
    assert emission.dead_letter == (
        "undeliverable",
        "cannot send 'welcome' step 1: user 'u1' has no email address",
    )
    opted_out = known()
    opted_out.unsubscribed_lists = ["marketing"]
    assert emitter().emit(REQUEST, opted_out, ItemModel.empty(), {}) == (opted_out, Emission("unsubscribed"))
    assert state.marketing_sends == []


def test_a_held_out_user_gets_no_job_but_the_send_is_recorded_as_the_baseline() -> None:
    experiment = Experiment("exp", "welcome", ("a", "b"), holdout=1.0)
    request = JobRequest("welcome", 1, "welcome", "u1", "signup-u1", BASE_TS, experiment="exp")
    state, emission = emitter().emit(request, known(), ItemModel.empty(), {"exp": experiment})
    assert emission == Emission("held_out", sent=BanditRecord("sent", "exp", HOLDOUT, None, False))
    [sent] = state.experiment_jobs
    assert (sent.experiment, sent.variant, sent.sent_ms, sent.rewarded) == ("exp", HOLDOUT, BASE_TS, False)
    assert state.marketing_sends == []


def test_an_experiment_job_carries_its_variant() -> None:
    experiment = Experiment("exp", "welcome", ("a",), policy="split")
    request = JobRequest("welcome", 1, "welcome", "u1", "signup-u1", BASE_TS, experiment="exp")
    state, emission = emitter().emit(request, known(), ItemModel.empty(), {"exp": experiment})
    assert emission.sent == BanditRecord("sent", "exp", "a", None, False)
    assert emission.job is not None and emission.job["variant"] == "a"
    assert [sent.variant for sent in state.experiment_jobs] == ["a"]
