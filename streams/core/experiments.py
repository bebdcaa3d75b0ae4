"""Experiments as configured (`streams/experiments.yaml`): parsed and checked at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.bandits import HOLDOUT, POLICIES, Experiment
from streams.core.definitions import read_definitions, top_level_list
from streams.core.errors import ConfigError

EXPERIMENT_FIELDS = {"name", "template", "variants", "policy", "holdout"}


def load_experiments(path: Path, templates: set[str]) -> dict[str, Experiment]:
    """Experiments by name; start-up stops on anything invalid."""
    entries = top_level_list(read_definitions(path, "experiments"), str(path), "experiments")
    experiments: dict[str, Experiment] = {}
    for i, entry in enumerate(entries):
        experiment = _parse_experiment(entry, f"{path}: experiments[{i}]", templates)
        if experiment.name in experiments:
            raise ConfigError(f"{path}: experiment `{experiment.name}` is defined more than once")
        experiments[experiment.name] = experiment
    return experiments


def _parse_experiment(entry: Any, where: str, templates: set[str]) -> Experiment:
    if (
        not isinstance(entry, dict)
        or not {"name", "template", "variants"} <= set(entry)
        or set(entry) - EXPERIMENT_FIELDS
    ):
        raise ConfigError(
            f"{where} must have name, template and variants, and may have policy and holdout; got {entry!r}"
        )
    name, template, variants = entry["name"], entry["template"], entry["variants"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must be a non-empty name; got {name!r}")
    if template not in templates:
        raise ConfigError(f"{where}.template must be one of {', '.join(sorted(templates))}; got {template!r}")
    if (
        not isinstance(variants, list)
        or len(variants) < 2
        or len(set(variants)) != len(variants)
        or not all(isinstance(v, str) and v and v != HOLDOUT for v in variants)
    ):
        raise ConfigError(f"{where}.variants must be two or more distinct names other than `holdout`; got {variants!r}")
    policy = entry.get("policy", "thompson")
    if policy not in POLICIES:
        raise ConfigError(f"{where}.policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    holdout = entry.get("holdout", 0.0)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout < 0.5:
        raise ConfigError(f"{where}.holdout must be a share of users from 0 to below 0.5; got {holdout!r}")
    return Experiment(name, template, tuple(variants), policy, float(holdout))
