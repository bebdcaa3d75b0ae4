"""Engagement propensity: the chance a user opens, clicks, or buys within 7 days.

Labels arrive late, so examples are made the way River's `progressive_val_score` with a
`delay` makes them: a user's state holds one open *probe*, the user's features at some
instant; opens, clicks and purchases in the next 7 days mark its outcomes; when the 7
days are over (seen at the user's next event or by the worker's timer) the probe
becomes a labelled example and a new one opens at the user's next event.

Examples go to the trainer (`ItemTrainer` owns every shared model), which keeps one
River pipeline per outcome (each feature and its log, standard scaling, then logistic regression), scores each
example before learning it (log loss and ROC AUC, the prequential way), and ships the
learned weights in its snapshot. Workers score users with those weights: a dot product,
no River object per user or per worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from river import compose, linear_model, metrics, optim, preprocessing

from models.base import Classifier, Exportable, Learner, Value

MILLIS_PER_DAY = 86_400_000
HORIZON_MS = 7 * MILLIS_PER_DAY
# Probes follow one another while the user was seen within this long.
ACTIVE_MS = 30 * MILLIS_PER_DAY
TARGETS = ("open", "click", "purchase")
OUTCOME_OF = {"email_open": "open", "email_click": "click", "purchase": "purchase"}
RECENCY_CAP_DAYS = 90.0
ACTIVITY = ("page_view", "click", "cart_add", "purchase", "email_open", "email_click")
# Smaller steps than River's default: examples are many and noisy (seeds 3-5 scored 0.767,
# 0.742, 0.740 at 0.02 and 0.774, 0.758, 0.750 at this rate with `with_logs`).
LEARNING_RATE = 0.002
FEATURES = (
    *(f"{event_type}_{span}" for span in ("7d", "30d") for event_type in ACTIVITY),
    "days_since_open",
    "days_since_click",
    "days_since_purchase",
    "days_since_seen",
    "cart_items",
    "mobile",
    # Sessions (days active), money and lifetime rates: what recency and 30-day counts miss.
    "active_days_7d",
    "active_days_30d",
    "revenue_30d",
    "average_order",
    "purchases_per_week",
    "opens_per_week",
)

# A user's features at a probe and the outcomes seen in the 7 days after it.
PropensityExample = tuple[dict[str, float], list[str]]


@dataclass(frozen=True, slots=True)
class Probe:
    """A user's features at an instant (`at`), in FEATURES order, and the outcomes seen since.

    Kept in the user's state, so kept small: values only, rounded."""

    at: int
    x: list[float]
    y: list[str]


def probe_features(probe: Probe) -> dict[str, float]:
    """The probe's features by name. New features are appended to FEATURES, so a probe
    opened by an earlier release (fewer values) names its own and lacks the new ones."""
    return dict(zip(FEATURES, probe.x, strict=False))


def observe(probe: Probe | None, event_type: str, ts: int) -> Probe | None:
    """The probe with this event's outcome marked, if it falls in the probe's window."""
    outcome = OUTCOME_OF.get(event_type)
    if probe is None or outcome is None or outcome in probe.y or not probe.at < ts <= probe.at + HORIZON_MS:
        return probe
    return Probe(probe.at, probe.x, [*probe.y, outcome])


def is_due(probe: Probe | None, now_ms: int) -> bool:
    return probe is not None and now_ms >= probe.at + HORIZON_MS


def is_active(last_seen_ms: int, now_ms: int) -> bool:
    """Whether a user seen last at `last_seen_ms` still gets probes at `now_ms`."""
    return now_ms - last_seen_ms < ACTIVE_MS


def due_ms(probe: Probe | None) -> int | None:
    return probe.at + HORIZON_MS if probe is not None else None


def with_logs(x: dict[str, float]) -> dict[str, float]:
    """The features and the logarithm of each (`log_<name>`): the chance to buy grows with the
    log of counts, gaps and money more than with the values, and the regression weighs both.
    Chosen by `tidemail eval --models engagement` (seeds 3, 4, 5: ROC AUC +0.007 to +0.016)."""
    return {**x, **{f"log_{name}": math.log1p(max(value, 0.0)) for name, value in x.items()}}


@dataclass(frozen=True, slots=True)
class Scorer(Classifier[dict[str, float]], Value[dict[str, Any]]):
    """A learned logistic regression over standardised features, as plain numbers.

    >>> scorer = Scorer({"email_open_30d": 1.0}, {"email_open_30d": 4.0}, {"email_open_30d": 2.0}, 0.0)
    >>> round(scorer.predict_proba_one({"email_open_30d": 3.0}), 4)
    0.8808
    """

    means: dict[str, float]
    variances: dict[str, float]
    weights: dict[str, float]
    intercept: float

    def predict_proba_one(self, x: dict[str, float], /) -> float:
        """The chance of the outcome; features the regression never saw count for nothing."""
        z = self.intercept
        for name, value in with_logs(x).items():
            weight = self.weights.get(name)
            if weight is not None:
                spread = math.sqrt(self.variances.get(name, 0.0))
                z += weight * ((value - self.means.get(name, 0.0)) / spread if spread > 0 else 0.0)
        return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))

    def export(self) -> dict[str, Any]:
        return {"means": self.means, "variances": self.variances, "weights": self.weights, "intercept": self.intercept}

    @classmethod
    def restore(cls, state: dict[str, Any], /) -> Scorer:
        return cls(state["means"], state["variances"], state["weights"], float(state["intercept"]))


@dataclass(frozen=True, slots=True)
class PropensitySnapshot:
    """What the trainer ships of propensity: a scorer per outcome (none before the first
    example) and each one's prequential quality."""

    scorers: dict[str, Scorer]
    quality: dict[str, Any]


class PropensityTrainer(Learner[PropensityExample], Exportable[PropensitySnapshot]):
    """One River pipeline per outcome, scored before it learns each example.

    >>> trainer = PropensityTrainer()
    >>> trainer.learn_many([({"email_open_30d": 3.0}, ["open"]), ({"email_open_30d": 0.0}, [])])
    >>> exported = trainer.export()
    >>> sorted(exported.scorers), exported.quality["examples"]
    (['click', 'open', 'purchase'], 2)
    """

    def __init__(self) -> None:
        self._models = {
            target: compose.FuncTransformer(with_logs)
            | preprocessing.StandardScaler()
            | linear_model.LogisticRegression(optimizer=optim.SGD(LEARNING_RATE), l2=0.001)
            for target in TARGETS
        }
        # River's metrics are untyped; Any keeps mypy from flagging every call.
        self._log_loss: dict[str, Any] = {target: metrics.LogLoss() for target in TARGETS}  # type: ignore[no-untyped-call]
        self._auc: dict[str, Any] = {target: metrics.ROCAUC() for target in TARGETS}  # type: ignore[no-untyped-call]
        self._examples = 0

    def learn_one(self, example: PropensityExample, /) -> None:
        features, outcomes = example
        for target, model in self._models.items():
            label = target in outcomes
            predicted = model.predict_proba_one(features).get(True, 0.5)
            self._log_loss[target].update(label, predicted)
            self._auc[target].update(label, predicted)
            model.learn_one(features, label)
        self._examples += 1

    def export(self) -> PropensitySnapshot:
        scorers = {target: _scorer(model) for target, model in self._models.items()} if self._examples else {}
        return PropensitySnapshot(scorers, self._quality())

    def restore(self, state: PropensitySnapshot, /) -> None:
        """Continue from published weights, as if it had learned them itself.

        Log loss continues from the published value; ROC AUC cannot be rebuilt from one
        number, so it counts again from the next example."""
        examples = int(state.quality.get("examples", 0))
        for target, scorer in state.scorers.items():
            scaler, regression = self._models[target]["StandardScaler"], self._models[target]["LogisticRegression"]
            scaler.counts.update(dict.fromkeys(scorer.means, max(examples, 1)))
            scaler.means.update(scorer.means)
            scaler.vars.update(scorer.variances)
            for name, weight in scorer.weights.items():
                regression._weights[name] = weight
            regression.intercept = scorer.intercept
            if examples:
                self._log_loss[target]._mean.update(state.quality[target]["log_loss"], w=examples)
        self._examples = examples

    def _quality(self) -> dict[str, Any]:
        return {
            "examples": self._examples,
            **{
                target: {
                    "log_loss": round(float(self._log_loss[target].get()), 4),
                    "auc": round(float(self._auc[target].get()), 4),
                }
                for target in TARGETS
            },
        }


def _scorer(model: Any) -> Scorer:
    scaler, regression = model["StandardScaler"], model["LogisticRegression"]
    return Scorer(
        {k: float(v) for k, v in scaler.means.items()},
        {k: float(v) for k, v in scaler.vars.items()},
        {k: float(v) for k, v in regression.weights.items()},
        float(regression.intercept),
    )
