"""`tidemail eval`'s bandit check: Thompson sampling over three subject lines whose open
rates the simulation knows, with opens arriving hours after their sends.

Each send chooses its variant as the worker does (`Experiment.assign` with the posteriors
of the trainer's latest snapshot, published every `SNAPSHOT_EVERY_MS`) and goes to the
trainer as a `sent` record; an open, when the recipient opens at all, reaches the trainer
an exponentially distributed delay later as a first reward. Reported per window of
`WINDOW` sends: the share of sends on the best variant and the regret (the opens lost
against always sending the best one, in expectation), and the cumulative regret.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from models.bandits import BanditRecord, BanditTrainer, Experiment, posteriors_of

RATES = {"a": 0.10, "b": 0.12, "c": 0.15}
SENDS = 20_000
WINDOW = 5_000
SEND_EVERY_MS = 10_000
MEAN_OPEN_DELAY_MS = 4 * 3_600_000
SNAPSHOT_EVERY_MS = 5_000


@dataclass(slots=True)
class BanditRun:
    seed: int
    best: str
    # Per window of WINDOW sends: sends on the best variant, and the expected opens lost.
    best_sends: list[int] = field(default_factory=list)
    regret: list[float] = field(default_factory=list)

    def share_on_best(self, window: int) -> float:
        return self.best_sends[window] / WINDOW

    def cumulative_regret(self, window: int) -> float:
        return sum(self.regret[: window + 1])


def simulate_bandit(seed: int, rates: dict[str, float] = RATES, sends: int = SENDS) -> BanditRun:
    rng = random.Random(seed)
    experiment = Experiment("subject_test", "welcome", tuple(rates))
    best = max(rates, key=lambda variant: rates[variant])
    trainer = BanditTrainer()
    posteriors = posteriors_of(trainer.export(), experiment.name)
    published_ms = 0
    opens: list[tuple[int, str]] = []  # (arrival instant, variant)
    run = BanditRun(seed, best)
    for n in range(sends):
        now = n * SEND_EVERY_MS
        while opens and opens[0][0] <= now:
            _, variant = heapq.heappop(opens)
            trainer.learn_one(BanditRecord("reward", experiment.name, variant, "email_open", True))
        if now - published_ms >= SNAPSHOT_EVERY_MS:
            posteriors, published_ms = posteriors_of(trainer.export(), experiment.name), now
        variant = experiment.assign(f"user-{n}", f"job-{seed}-{n}", posteriors)
        trainer.learn_one(BanditRecord("sent", experiment.name, variant, None, False))
        if rng.random() < rates[variant]:
            heapq.heappush(opens, (now + int(rng.expovariate(1 / MEAN_OPEN_DELAY_MS)), variant))
        if n % WINDOW == 0:
            run.best_sends.append(0)
            run.regret.append(0.0)
        run.best_sends[-1] += variant == best
        run.regret[-1] += rates[best] - rates[variant]
    return run


def report_bandits(runs: list[BanditRun]) -> str:
    rates = ", ".join(f"{variant} {rate:.2f}" for variant, rate in RATES.items())
    windows = len(runs[0].best_sends)
    lines = [
        f"== Thompson bandit: {SENDS:,} sends, one every {SEND_EVERY_MS // 1000} s, open rates {rates}, "
        f"opens {MEAN_OPEN_DELAY_MS // 3_600_000} h late on average",
        f"{'window of ' + format(WINDOW, ',') + ' sends':<30}" + "".join(f"{w + 1:>10}" for w in range(windows)),
    ]
    for run in runs:
        lines.append(
            f"{'seed ' + str(run.seed) + ': share on best':<30}"
            + "".join(f"{run.share_on_best(w):>10.1%}" for w in range(windows))
        )
        lines.append(
            f"{'  cumulative regret (opens)':<30}"
            + "".join(f"{run.cumulative_regret(w):>10.0f}" for w in range(windows))
        )
    uniform = SENDS * (max(RATES.values()) - sum(RATES.values()) / len(RATES))
    lines.append(f"(a fixed even split would lose {uniform:.0f} opens over the {SENDS:,} sends)")
    last = ", ".join(f"{run.share_on_best(windows - 1):.1%}" for run in runs)
    lines.append(f"target: share on the best variant in the last {WINDOW:,} sends {last} (target >= 90%)")
    return "\n".join(lines)
