"""Bandits for content variants: Thompson sampling per experiment, state per experiment.

An experiment names a template and its variants (`streams/experiments.yaml`); a flow's
send step names the experiment it runs. Each
variant's chance of engaging is a Beta posterior, held as River `proba.Beta` objects by
the trainer, which sees every send and every reward of the fleet: a send counts as a
failure until a reward for that job arrives, which then turns it into a success (River's
`revert`), so late opens are neither lost nor counted twice. The trainer ships alpha and
beta per variant in its snapshot; a worker draws from each posterior with a generator
seeded by the job id, so a replayed job chooses the same variant.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, NamedTuple

from river import proba

from models.base import Exportable, Learner

REWARD_EVENTS = {"email_open": "opens", "email_click": "clicks", "purchase": "purchases"}
STATS = ("sends", "opens", "clicks", "purchases", "rewarded")


HOLDOUT = "holdout"
POLICIES = ("thompson", "split")


class BanditRecord(NamedTuple):
    """One experiment outcome for the trainer: a send, or a reward of an earlier send."""

    kind: str  # "sent" or "reward"
    experiment: str
    variant: str
    # The rewarding event's type (`email_open`, `email_click`, `purchase`); None for a send.
    event_type: str | None
    # Whether this is the first reward of its job (a job counts as a success once).
    first: bool

    @property
    def outcome(self) -> str:
        """The statistic it counts towards: `sends`, `opens`, `clicks` or `purchases`."""
        return "sends" if self.event_type is None else REWARD_EVENTS[self.event_type]


@dataclass(frozen=True, slots=True)
class Experiment:
    """Variants of one template. `thompson` lets the bandit choose per job; `split` gives
    each user a fixed variant. A `holdout` share of users gets nothing, to measure lift."""

    name: str
    template: str
    variants: tuple[str, ...]
    policy: str = "thompson"
    holdout: float = 0.0

    def is_held_out(self, user_id: str) -> bool:
        return self.holdout > 0 and _unit_hash(f"{self.name}\x1fholdout\x1f{user_id}") < self.holdout

    def assign(self, user_id: str, job_id: str, posteriors: dict[str, list[float]]) -> str:
        """The variant for this user's job: the same one on every replay."""
        if self.policy == "split":
            return self.variants[int(_unit_hash(f"{self.name}\x1f{user_id}") * len(self.variants))]
        return choose_variant(self, posteriors, job_id)


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) for `text`."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def choose_variant(experiment: Experiment, posteriors: dict[str, list[float]], job_id: str) -> str:
    """Thompson sampling: the variant whose posterior draw is highest, drawn reproducibly."""
    # The standard library's generator: seeding numpy's costs ~30 us, a tenth of a job.
    rng = random.Random(hashlib.blake2b(job_id.encode(), digest_size=8).digest())
    draws = [rng.betavariate(*posteriors.get(variant, (1.0, 1.0))) for variant in experiment.variants]
    return experiment.variants[draws.index(max(draws))]


# Per experiment and variant: the Beta posterior (alpha, beta) and send and reward counts.
BanditState = dict[str, dict[str, dict[str, float]]]


class BanditTrainer(Learner[BanditRecord], Exportable[BanditState]):
    """Every experiment's posteriors and per-variant counts, from the fleet's sends and rewards."""

    def __init__(self) -> None:
        self._posteriors: dict[str, dict[str, Any]] = {}
        self._stats: dict[str, dict[str, dict[str, int]]] = {}

    def learn_one(self, record: BanditRecord, /) -> None:
        """A send counts as a failure until a reward says otherwise; the first reward of a
        job turns it into a success."""
        if record.kind == "sent":
            self._posterior(record.experiment, record.variant).update(False)
            self._count(record.experiment, record.variant, "sends")
            return
        assert record.event_type is not None
        self._count(record.experiment, record.variant, REWARD_EVENTS[record.event_type])
        if record.first:
            posterior = self._posterior(record.experiment, record.variant)
            posterior.revert(False)
            posterior.update(True)
            self._count(record.experiment, record.variant, "rewarded")

    def export(self) -> BanditState:
        return {
            experiment: {
                variant: {
                    "alpha": float(posterior.alpha),
                    "beta": float(posterior.beta),
                    **self._stats[experiment][variant],
                }
                for variant, posterior in arms.items()
            }
            for experiment, arms in self._posteriors.items()
        }

    def restore(self, state: BanditState, /) -> None:
        for experiment, arms in state.items():
            for variant, doc in arms.items():
                self._posteriors.setdefault(experiment, {})[variant] = proba.Beta(int(doc["alpha"]), int(doc["beta"]))
                self._stats.setdefault(experiment, {})[variant] = {stat: int(doc[stat]) for stat in STATS}

    def _posterior(self, experiment: str, variant: str) -> Any:
        arms = self._posteriors.setdefault(experiment, {})
        if variant not in arms:
            arms[variant] = proba.Beta()
        return arms[variant]

    def _count(self, experiment: str, variant: str, stat: str) -> None:
        counts = self._stats.setdefault(experiment, {}).setdefault(variant, dict.fromkeys(STATS, 0))
        counts[stat] += 1


def posteriors_of(exported: BanditState, experiment: str) -> dict[str, list[float]]:
    return {variant: [doc["alpha"], doc["beta"]] for variant, doc in exported.get(experiment, {}).items()}


def report(experiment: Experiment, exported: BanditState) -> dict[str, Any]:
    """Per variant (and the holdout group): sends, opens, clicks, purchases, their rates, the
    posterior's expected reward, and each variant's purchase rate as lift over the holdout."""
    arms = exported.get(experiment.name, {})
    groups = [*experiment.variants, *([HOLDOUT] if experiment.holdout > 0 else [])]
    view: dict[str, dict[str, Any]] = {}
    for group in groups:
        stats = arms.get(group, {"alpha": 1.0, "beta": 1.0, **dict.fromkeys(STATS, 0)})
        sends = stats["sends"]
        view[group] = {
            **{stat: int(stats[stat]) for stat in STATS},
            **{f"{stat}_rate": round(stats[stat] / sends, 4) if sends else None for stat in REWARD_EVENTS.values()},
            "alpha": stats["alpha"],
            "beta": stats["beta"],
            "expected_reward": round(stats["alpha"] / (stats["alpha"] + stats["beta"]), 4),
        }
    baseline = view.get(HOLDOUT, {}).get("purchases_rate")
    for variant in experiment.variants:
        rate = view[variant]["purchases_rate"]
        view[variant]["purchase_lift"] = round(rate / baseline - 1, 4) if rate is not None and baseline else None
    return {
        "name": experiment.name,
        "template": experiment.template,
        "policy": experiment.policy,
        "holdout": experiment.holdout,
        "variants": view,
    }
