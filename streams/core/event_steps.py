"""The steps an event goes through after `apply`, in the order the processor runs them:
interactions, engagement, rewards, the propensity probe, segments, flows.

Each step takes the state this event's transition owns (the copy `apply` made) and returns
it with the fields the step is about replaced, never a container mutated that the state
before the event shares, together with the step's typed outputs, which the processor
folds into the batch's result. Two steps concern a few kinds of event only (engagement,
rewards), and the processor calls them for those alone; the others see every event, and
return None rather than an empty record when they have nothing to report.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

from models import propensity
from models.bandits import BanditRecord
from models.interactions import InteractionExample
from models.propensity import PropensityExample
from models.ranking import item_to_item_top, popular_top
from models.reco import ItemModel, remember
from models.send_time import add_engagement, hour_of_week
from streams.core.events import Event
from streams.core.flow_engine import FlowEngine, FlowOutputs
from streams.core.learning import bought_skus, interactions_of, open_probe, owned_skus
from streams.core.segments import SegmentBook, Transitions
from streams.core.state import ExperimentSend, UserState

# Recommender quality is measured as hit-rate at 10 of the product acted on, for (a) every
# click and purchase, and (b) every first touch of a product the user had not touched.
PREDICTED_EVENTS = frozenset({"click", "purchase"})
QUALITY_K = 10
# One in this many clicks and purchases is predicted, and one in this many events of any
# kind for first touches (four times rarer: most events with products are views): ranking
# costs tens of microseconds, and a fixed sample (by event id, so replays agree) measures
# the same rates at a fraction of the cost. A multiple, so one ranking serves both.
QUALITY_SAMPLE = 16
NEW_QUALITY_SAMPLE = 64
ENGAGEMENT_EVENTS = frozenset({"email_open", "email_click"})
# A purchase rewards the user's latest experiment email if it came at most this long before.
PURCHASE_ATTRIBUTION_MS = 7 * 86_400_000


class QualitySample(NamedTuple):
    """One sampled event's products, predicted before learning them: how many clicked or
    bought products, and how many of them each recommender had in its top `QUALITY_K`;
    the same for the products the user touched for the first time, where the item-to-item
    baseline is asked too."""

    predictions: int
    model_hits: int
    popular_hits: int
    new_predictions: int = 0
    new_model_hits: int = 0
    new_popular_hits: int = 0
    new_item_to_item_hits: int = 0


# Not frozen, like InputRecord: one is built for most events, and a frozen one takes three
# times as long to build.
@dataclass(slots=True)
class LearnedInteractions:
    """The implicit feedback in one event, for the trainer, and its quality sample if any."""

    interactions: list[InteractionExample]
    quality: QualitySample | None


def learn_interactions(
    before: UserState, state: UserState, event: Event, weights: dict[str, float], item_model: ItemModel
) -> tuple[UserState, LearnedInteractions | None]:
    """The user's new interaction history; a fixed sample of events is predicted first."""
    interactions = interactions_of(event, weights)
    if not interactions:
        return state, None
    quality = None
    bucket = zlib.crc32(event.event_id.encode())
    predicted = bucket % QUALITY_SAMPLE == 0 and event.type in PREDICTED_EVENTS
    first_touches = bucket % NEW_QUALITY_SAMPLE == 0
    if predicted or first_touches:
        quality = _sample_quality(before, predicted, first_touches, interactions, item_model)
    history = before.recent_interactions
    for interaction, _ in interactions:
        history = remember(history, interaction)
    state.recent_interactions = history
    return state, LearnedInteractions(interactions, quality)


def _sample_quality(
    before: UserState,
    predicted: bool,
    first_touches: bool,
    interactions: list[InteractionExample],
    item_model: ItemModel,
) -> QualitySample | None:
    """How the recommender and the baselines would have ranked what the user acted on, from
    the user's state before it: the clicked or bought products if `predicted`, those new to
    the user if `first_touches`; None when that leaves nothing. Every list leaves out what
    the user touched, as emails do."""
    history = before.recent_interactions
    touched = owned_skus(before).union(history[::2])
    skus = [interaction.sku for interaction, _ in interactions]
    fresh = [sku for sku in skus if sku not in touched] if first_touches else []
    if not (predicted or fresh):
        return None
    picks = {r.sku for r in item_model.predict_top(history, QUALITY_K, touched, bought_skus(before))}
    popular = popular_top(item_model, QUALITY_K, touched)
    clicked = skus if predicted else []
    following = item_to_item_top(history, item_model, QUALITY_K, touched) if fresh else []
    return QualitySample(
        len(clicked),
        sum(sku in picks for sku in clicked),
        sum(sku in popular for sku in clicked),
        len(fresh),
        sum(sku in picks for sku in fresh),
        sum(sku in popular for sku in fresh),
        sum(sku in following for sku in fresh),
    )


def note_engagement(state: UserState, event: Event) -> tuple[UserState, int]:
    """An open or click (`ENGAGEMENT_EVENTS`) counts towards its local hour of the week, which
    is also the output: the send-time prior learns from every user's hours."""
    hour = hour_of_week(event.timestamp_ms, state.traits.get("timezone"))
    state.engagement_hours = add_engagement(state.engagement_hours, hour)
    return state, hour


def attribute_rewards(state: UserState, event: Event) -> tuple[UserState, list[BanditRecord]]:
    """Credit an open or click to the experiment job it names, a purchase to the latest recent
    one; for the `REWARD_EVENTS` of a user with experiment jobs."""
    jobs = state.experiment_jobs
    if event.type == "purchase":
        recent = [j for j in jobs if 0 <= event.timestamp_ms - j.sent_ms <= PURCHASE_ATTRIBUTION_MS]
        target = recent[-1].job_id if recent else None
    else:
        target = event.properties.get("job_id")
    rewards: list[BanditRecord] = []
    updated: list[ExperimentSend] = []
    for job in jobs:
        if job.job_id == target:
            rewards.append(BanditRecord("reward", job.experiment, job.variant, event.type, not job.rewarded))
            job = job._replace(rewarded=True)
        updated.append(job)
    state.experiment_jobs = updated
    return state, rewards


def advance_probe(before: UserState, state: UserState, event: Event) -> tuple[UserState, PropensityExample | None]:
    """Mark the event's outcome on the open propensity probe, close the probe if its 7 days
    are over (it becomes an example), and open a new one at the event when none is open."""
    at_ms = event.timestamp_ms
    # Observed before closing: an outcome at the last instant of the probe's window counts.
    probe = propensity.observe(before.propensity_probe, event.type, at_ms)
    example = None
    if propensity.is_due(probe, at_ms):
        assert probe is not None
        example, probe = (propensity.probe_features(probe), probe.y), None
    state.propensity_probe = probe if probe is not None else open_probe(state, at_ms)
    return state, example


def close_due_probe(state: UserState, now_ms: int) -> tuple[UserState, PropensityExample | None]:
    """On the timer: the probe's outcomes are final once its 7 days are over, and it leaves
    the state as an example. While the user is active the next probe starts where it ended,
    so examples also ask about the days a user is away, not only the moments of their events
    (no event came since: one would have closed it)."""
    probe = state.propensity_probe
    if not propensity.is_due(probe, now_ms):
        return state, None
    assert probe is not None
    ended = probe.at + propensity.HORIZON_MS
    state.propensity_probe = open_probe(state, ended) if propensity.is_active(state.last_seen_ms, ended) else None
    return state, (propensity.probe_features(probe), probe.y)


def evaluate_segments(
    book: SegmentBook, before: UserState, state: UserState, event: Event
) -> tuple[UserState, Transitions | None]:
    """Add the event to the user's windows and re-evaluate the segments it can move."""
    state.windows, touched = book.accumulate(state.windows, event)
    # Segments are evaluated in event time (the user's latest event), so a replay
    # reaches the same memberships; the clock catches up with anything due since.
    # Evaluated after every event, not once per batch: a replay after a crash groups
    # events into other batches, and must still publish the same transitions.
    changed_inputs = book.inputs_changed_by(before, state, event, touched)
    evaluation = book.after_events(state, changed_inputs, state.last_seen_ms, event.event_id)
    state.segments = evaluation.segments
    state.next_check_ms = evaluation.next_check_ms
    return state, evaluation.transitions


def run_flows(
    engine: FlowEngine, state: UserState, event: Event, moved: Transitions | None
) -> tuple[UserState, FlowOutputs | None]:
    """Advance the user's flow runs to this event and start those it (or a segment it made
    the user enter) triggers; None when no flow concerns the event."""
    entered = engine.triggers_among(moved)
    if not (state.flow_runs or event.type in engine.book.by_trigger_event or entered):
        return state, None
    out = FlowOutputs([], [])
    # Waits that ended before this event run out first; their steps see the state after it.
    engine.fire_due(state, event.timestamp_ms - 1, out)
    engine.on_event(state, event, entered, out)
    return state, out
