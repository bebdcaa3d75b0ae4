from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from app.settings import Settings
from models import bandits
from models.bandits import BanditRecord, BanditTrainer, Experiment, choose_variant, posteriors_of
from models.reco import ItemModel
from streams.core.errors import ConfigError
from streams.core.experiments import load_experiments
from tests.factories import BASE_TS, event_doc
from tests.unit.core.support import Store, processor, record, signup

EXPERIMENT = Experiment("subject", "welcome", ("a", "b"))


def test_the_shipped_experiments_load() -> None:
    experiments = load_experiments(Settings().experiments_file, {"welcome", "cart_reminder", "winback"})
    assert experiments["welcome_preheader"].variants == ("promise", "picks")
    assert experiments["winback_subject"].policy == "split" and experiments["winback_subject"].holdout == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("experiments: [{name: x, template: nope, variants: [a, b]}]", "template must be one of"),
        ("experiments: [{name: x, template: welcome, variants: [a]}]", "two or more distinct names"),
        ("experiments: [{name: x, template: welcome, variants: [a, a]}]", "two or more distinct names"),
        ("experiments: [{name: x, template: welcome}]", "must have name, template and variants"),
        ("experiments: [{name: x, template: welcome, variants: [a, holdout]}]", "other than `holdout`"),
        ("experiments: [{name: x, template: welcome, variants: [a, b], policy: ucb}]", "policy must be one of"),
        ("experiments: [{name: x, template: welcome, variants: [a, b], holdout: 0.6}]", "from 0 to below 0.5"),
        (
            "experiments: [{name: x, template: welcome, variants: [a, b]},"
            " {name: x, template: welcome, variants: [c, d]}]",
            "experiment `x` is defined more than once",
        ),
    ],
)
def test_invalid_experiments_stop_start_up(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_experiments(path, {"welcome"})


def test_choice_is_reproducible_per_job_and_even_without_evidence() -> None:
    assert choose_variant(EXPERIMENT, {}, "job-1") == choose_variant(EXPERIMENT, {}, "job-1")
    picks = Counter(choose_variant(EXPERIMENT, {}, f"job-{n}") for n in range(1_000))
    assert 400 < picks["a"] < 600


def test_split_assignment_and_holdout_are_fixed_per_user() -> None:
    split = Experiment("subject", "welcome", ("a", "b"), policy="split", holdout=0.2)
    users = [f"u{n}" for n in range(2_000)]
    held_out = [u for u in users if split.is_held_out(u)]
    assert 300 < len(held_out) < 500
    assigned = {u: split.assign(u, f"job-{n}", {}) for n, u in enumerate(users)}
    assert all(split.assign(u, "another-job", {}) == v for u, v in assigned.items())
    assert 900 < Counter(assigned.values())["a"] < 1_100


def test_a_late_reward_turns_its_send_into_a_success_once() -> None:
    trainer = BanditTrainer()
    for _ in range(10):
        trainer.learn_one(BanditRecord("sent", "subject", "a", None, False))
    trainer.learn_one(BanditRecord("reward", "subject", "a", "email_open", True))
    trainer.learn_one(BanditRecord("reward", "subject", "a", "email_click", False))
    arm = trainer.export()["subject"]["a"]
    assert (arm["alpha"], arm["beta"]) == (2.0, 10.0)
    assert (arm["sends"], arm["opens"], arm["clicks"], arm["rewarded"]) == (10, 1, 1, 1)
    copy = BanditTrainer()
    copy.restore(trainer.export())
    assert copy.export() == trainer.export()


def test_thompson_sampling_moves_sends_to_the_variant_that_engages() -> None:
    trainer = BanditTrainer()
    for n in range(400):
        variant = choose_variant(EXPERIMENT, posteriors_of(trainer.export(), "subject"), f"job-{n}")
        trainer.learn_one(BanditRecord("sent", "subject", variant, None, False))
        if (variant == "b" and n % 3 == 0) or (variant == "a" and n % 20 == 0):
            trainer.learn_one(BanditRecord("reward", "subject", variant, "email_open", True))
    arms = trainer.export()["subject"]
    assert arms["b"]["sends"] > 3 * arms["a"]["sends"]


def test_jobs_carry_their_variant_and_opens_of_them_are_rewards() -> None:
    worker = processor()
    worker.experiments = {"welcome_preheader": Experiment("welcome_preheader", "welcome", ("promise", "picks"))}
    worker.item_model = ItemModel.empty()
    store = Store()
    sent = worker.process({0: [record(0, signup("u1"))]}, store.load)
    store.save(sent)
    [job] = sent.outputs.jobs
    assert job["experiment"] == "welcome_preheader" and job["variant"] in ("promise", "picks")
    assert sent.training.bandit_records == [BanditRecord("sent", "welcome_preheader", job["variant"], None, False)]

    opens = [
        record(1, event_doc("email_open", "u1", event_id="o1", ts=BASE_TS + 1, job_id=job["job_id"])),
        record(2, event_doc("email_open", "u1", event_id="o2", ts=BASE_TS + 2, job_id=job["job_id"])),
        record(3, event_doc("email_open", "u1", event_id="o3", ts=BASE_TS + 3, job_id="another-job")),
        record(4, event_doc("purchase", "u1", event_id="p1", ts=BASE_TS + 4)),
    ]
    rewarded = worker.process({0: opens}, store.load)
    assert rewarded.training.bandit_records == [
        BanditRecord("reward", "welcome_preheader", job["variant"], "email_open", True),
        BanditRecord("reward", "welcome_preheader", job["variant"], "email_open", False),
        BanditRecord("reward", "welcome_preheader", job["variant"], "purchase", False),
    ]


def test_the_report_compares_each_variant_with_the_holdout() -> None:
    experiment = Experiment("subject", "welcome", ("a", "b"), holdout=0.1)
    trainer = BanditTrainer()
    for n in range(100):
        trainer.learn_one(BanditRecord("sent", "subject", "a", None, False))
        trainer.learn_one(BanditRecord("sent", "subject", "b", None, False))
        if n < 10:
            trainer.learn_one(BanditRecord("sent", "subject", "holdout", None, False))
    for _ in range(10):
        trainer.learn_one(BanditRecord("reward", "subject", "a", "purchase", True))
    trainer.learn_one(BanditRecord("reward", "subject", "holdout", "purchase", True))
    view = bandits.report(experiment, trainer.export())
    assert view["policy"] == "thompson" and view["holdout"] == 0.1
    assert view["variants"]["a"]["purchases_rate"] == 0.1 and view["variants"]["holdout"]["purchases_rate"] == 0.1
    assert view["variants"]["a"]["purchase_lift"] == 0.0 and view["variants"]["b"]["purchase_lift"] == -1.0
    assert view["variants"]["b"]["opens_rate"] == 0.0
    assert bandits.report(Experiment("new", "welcome", ("a", "b")), {})["variants"]["a"]["sends"] == 0
