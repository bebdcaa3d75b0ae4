"""The models the worker predicts with, and the experiments they arbitrate."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.api.services import ApiServices, json_response, services
from models import bandits
from models.bandits import Experiment


async def models(request: web.Request) -> web.Response:
    """The models this worker predicts with, and their prequential quality."""
    app = services(request)
    body = {
        "recommendations": {
            **app.snapshots.status(),
            "weights": app.settings.reco_weights,
            "quality": app.reco_quality.report(),
        },
        # Measured by the trainer, before it learns each example; shipped in the snapshot.
        "propensity": app.processor.item_model.propensity_quality,
    }
    return json_response(body)


async def list_experiments(request: web.Request) -> web.Response:
    app = services(request)
    experiments = [_experiment_view(app, e) for e in app.processor.experiments.values()]
    return json_response({"experiments": experiments})


async def show_experiment(request: web.Request) -> web.Response:
    """An experiment's variants and holdout: sends, opens, clicks, purchases, rates, lift."""
    app = services(request)
    name = request.match_info["name"]
    for experiment in app.processor.experiments.values():
        if experiment.name == name:
            return json_response(_experiment_view(app, experiment))
    return json_response({"error": f"no experiment {name!r}"}, 404)


def _experiment_view(app: ApiServices, experiment: Experiment) -> dict[str, Any]:
    # Counted by the trainer over the whole fleet; as of the snapshot this worker holds.
    return bandits.report(experiment, app.processor.item_model.bandits)
