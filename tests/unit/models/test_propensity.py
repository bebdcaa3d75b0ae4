from __future__ import annotations

import random

import pytest

from models import propensity
from models.propensity import HORIZON_MS, PropensityTrainer
from streams.core import learning
from streams.core.learning import features
from streams.core.state import MILLIS_PER_DAY, StatePolicy, UserState, apply
from tests.factories import BASE_TS, event_doc, make_event
from tests.unit.core.support import Store, processor, record

DAY = MILLIS_PER_DAY


def test_features_count_recent_activity_and_cap_recency() -> None:
    state = UserState("u1")
    for n, (kind, days_ago) in enumerate([("page_view", 1), ("page_view", 10), ("email_open", 2)]):
        state = apply(state, make_event(kind, event_id=f"e{n}", ts=BASE_TS - days_ago * DAY), StatePolicy())
    x = features(state, BASE_TS)
    assert x["page_view_7d"] == pytest.approx(0.6931, abs=1e-4) and x["page_view_30d"] == pytest.approx(1.0986, 1e-4)
    assert x["days_since_open"] == 2.0 and x["days_since_purchase"] == 90.0 and x["mobile"] == 0.0


def test_a_probe_marks_outcomes_in_its_window_only_and_comes_due_after_seven_days() -> None:
    probe = learning.open_probe(UserState("u1"), BASE_TS)
    probe = propensity.observe(probe, "email_open", BASE_TS + DAY)
    probe = propensity.observe(probe, "email_open", BASE_TS + 2 * DAY)
    probe = propensity.observe(probe, "purchase", BASE_TS + HORIZON_MS + 1)
    probe = propensity.observe(probe, "page_view", BASE_TS + DAY)
    assert probe is not None and probe.y == ["open"]
    assert not propensity.is_due(probe, BASE_TS + HORIZON_MS - 1) and propensity.is_due(probe, BASE_TS + HORIZON_MS)


def test_trainer_learns_a_planted_habit_and_its_exported_weights_score_alike() -> None:
    rng = random.Random(1)
    trainer = PropensityTrainer()
    for _ in range(3_000):
        opens = rng.randrange(5)
        x = {"email_open_30d": float(opens), "noise": rng.random()}
        # Users who opened more lately open again more often.
        trainer.learn_one((x, ["open"] if rng.random() < 0.1 + 0.2 * opens else []))
    exported = trainer.export()
    quality = exported.quality
    assert quality["examples"] == 3_000 and quality["open"]["auc"] > 0.7 and quality["click"]["log_loss"] < 0.2
    scorer = exported.scorers["open"]
    assert (
        scorer.predict_proba_one({"email_open_30d": 4.0, "noise": 0.5})
        > 0.6
        > scorer.predict_proba_one({"email_open_30d": 0.0, "noise": 0.5})
    )
    model = trainer._models["open"]
    x = {"email_open_30d": 3.0, "noise": 0.2}
    assert scorer.predict_proba_one(x) == pytest.approx(model.predict_proba_one(x)[True], abs=1e-6)

    restored = PropensityTrainer()
    restored.restore(exported)
    again = restored.export()
    assert again.scorers["open"].predict_proba_one(x) == pytest.approx(scorer.predict_proba_one(x), abs=1e-6)
    assert again.quality["open"]["log_loss"] == quality["open"]["log_loss"]


def test_the_worker_turns_probes_into_examples_on_the_next_event_or_on_the_clock() -> None:
    now = {"ms": BASE_TS}
    worker = processor()
    worker._clock_ms = lambda: now["ms"]
    store = Store()
    first = worker.process({0: [record(0, event_doc("page_view", "u1"))]}, store.load)
    store.save(first)
    probe = store.states[(0, "u1")].propensity_probe
    assert probe is not None and probe.at == BASE_TS
    # The timer index wakes the user when the probe is due, even if nothing else is pending.
    assert (BASE_TS + HORIZON_MS, "u1") in first.changes.timer_additions[0]

    opened = worker.process({0: [record(1, event_doc("email_open", "u1", ts=BASE_TS + DAY))]}, store.load)
    store.save(opened)
    assert opened.training.propensity_examples == []
    now["ms"] = BASE_TS + HORIZON_MS
    clock = worker.on_clock({0: [(BASE_TS + HORIZON_MS, "u1")]}, store.load)
    [(x, outcomes)] = clock.training.propensity_examples
    assert outcomes == ["open"] and x["page_view_7d"] > 0
    # The user is still active: the next probe starts where this one ended, and the user is
    # woken again no later than it is due.
    following = clock.changes.states[0]["u1"].propensity_probe
    assert following is not None and following.at == BASE_TS + HORIZON_MS and following.y == []
    assert min(due for due, _ in clock.changes.timer_additions[0]) <= BASE_TS + 2 * HORIZON_MS
