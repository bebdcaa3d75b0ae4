"""The last step of an event or a timer: each email a flow asked for is governed, given an
experiment variant, and rendered into a job; the `Emission` says what became of it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from models.bandits import HOLDOUT, BanditRecord, Experiment, posteriors_of
from models.reco import ItemModel
from models.send_time import best_send_time
from streams.core.content import EmailRenderer, RenderedEmail
from streams.core.errors import RenderError
from streams.core.flow_engine import JobRequest, job_id
from streams.core.governance import GovernancePolicy, decide, record_send
from streams.core.jobs import JobContext, build_job, email_context, signed_unsubscribe_url
from streams.core.state import DEFAULT_LIST, ExperimentSend, UserState

EXPERIMENT_JOBS_KEPT = 5


class Emission(NamedTuple):
    """What became of one job request."""

    # Governance's outcome (`allowed`, `unsubscribed`, `capped_24h`, ...), or `held_out`.
    outcome: str
    # Whether quiet hours moved an allowed send.
    delayed: bool = False
    # The experiment send for the bandits, when the request is part of an experiment.
    sent: BanditRecord | None = None
    job: dict[str, Any] | None = None
    # Why the request is dead-lettered, as (kind, reason): missing data or a failed render.
    dead_letter: tuple[str, str] | None = None
    # Whether the send waits for the user's best hour (`at: best_hour`).
    at_best_hour: bool = False


class JobEmitter:
    """Turns job requests into jobs for one user at a time; the models and experiments are
    passed per call because the worker swaps in new ones between batches."""

    def __init__(
        self,
        renderer: EmailRenderer,
        job_context: JobContext,
        governance: GovernancePolicy,
        clock_ms: Callable[[], int],
    ) -> None:
        self._renderer = renderer
        self._job_context = job_context
        self._governance = governance
        self._clock_ms = clock_ms

    @property
    def template_versions(self) -> dict[str, str]:
        return self._renderer.versions

    def emit(
        self, request: JobRequest, state: UserState, item_model: ItemModel, experiments: Mapping[str, Experiment]
    ) -> tuple[UserState, Emission]:
        """Govern, assign a variant, render; the state records the send (and experiment send)."""
        decision = decide(state, request, self._governance, lambda: best_hour(state, item_model))
        if not decision.allowed:
            return state, Emission(decision.outcome, dead_letter=_refusal(request, state, decision.outcome))
        the_job_id = job_id(request.flow, request.step, state.user_id, request.trigger_key)
        experiment = experiments.get(request.experiment) if request.experiment else None
        variant = sent = None
        if experiment:
            state, sent = assign_variant(experiment, request, state, the_job_id, item_model)
            variant = sent.variant
            if variant == HOLDOUT:
                return state, Emission("held_out", sent=sent)
        try:
            job = build_job(
                request,
                the_job_id,
                state,
                self._renderer,
                self._job_context,
                item_model,
                self._clock_ms(),
                decision.send_at_ms,
                experiment.name if experiment else None,
                variant,
            )
        except RenderError as e:
            return state, Emission(
                "allowed",
                decision.delayed,
                sent,
                dead_letter=("render_failed", str(e)),
                at_best_hour=decision.at_best_hour,
            )
        record_send(state, request, decision)
        return state, Emission("allowed", decision.delayed, sent, job, at_best_hour=decision.at_best_hour)

    def preview(self, template: str, state: UserState, item_model: ItemModel) -> RenderedEmail:
        """Render `template` for `state` as a job would be rendered now, without emitting anything."""
        now_ms = self._clock_ms()
        unsubscribe_url = signed_unsubscribe_url(state.user_id, DEFAULT_LIST, self._job_context, now_ms)
        context = email_context(state, self._job_context, item_model, unsubscribe_url, now_ms)
        return self._renderer.render(template, context)


def _refusal(request: JobRequest, state: UserState, outcome: str) -> tuple[str, str] | None:
    if outcome != "no_address":
        return None
    # Missing user data, unlike an opt-out: someone should look at it.
    reason = f"cannot send {request.flow!r} step {request.step}: user {state.user_id!r} has no email address"
    return "undeliverable", reason


def assign_variant(
    experiment: Experiment, request: JobRequest, state: UserState, the_job_id: str, item_model: ItemModel
) -> tuple[UserState, BanditRecord]:
    """The experiment's variant for this job, kept in the state to attribute rewards to."""
    posteriors = posteriors_of(item_model.bandits, experiment.name)
    held_out = experiment.is_held_out(state.user_id)
    variant = HOLDOUT if held_out else experiment.assign(state.user_id, the_job_id, posteriors)
    # Held-out users get nothing, but their purchases still count, as the baseline.
    sent = ExperimentSend(the_job_id, experiment.name, variant, request.at_ms, False)
    state.experiment_jobs = [*state.experiment_jobs[-(EXPERIMENT_JOBS_KEPT - 1) :], sent]
    return state, BanditRecord("sent", experiment.name, variant, None, False)


def best_hour(state: UserState, item_model: ItemModel) -> int | None:
    """The user's best local hour of the day to receive email, if one is predicted."""
    best = best_send_time(state.engagement_hours, item_model.send_hours)
    return best.hour if best is not None else None
