"""The models' dashboard: recommendations against popularity, the trainer, the prediction
cache, and the content experiments."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from app.tools.dashboards.panels import RATE, TRAINER, WORKER, Panel, dashboard, graph, stat

# Hit rates are noisy over a minute: a sample of one click in sixteen is predicted.
QUALITY_WINDOW = "30m"


def models_dashboard() -> Dashboard:
    return dashboard(
        "tidemail-models",
        "Tidemail models",
        "Recommendations, the item-model trainer, the prediction cache and content experiments.",
        [("Recommendations", _recommendations()), ("Cache and experiments", _cache_and_experiments())],
    )


def _recommendations() -> list[Panel]:
    return [
        *_hit_rates(),
        graph(
            "Predictions measured",
            "Clicks and purchases predicted before learning (the sample behind the hit rates).",
            "ops",
            (f"sum(rate(tidemail_reco_predictions_total{{{WORKER}}}[{RATE}]))", "predictions"),
        ),
        stat(
            "Trainers up",
            "Trainers Prometheus scrapes (one holds the interactions).",
            "short",
            (f"sum(up{{{TRAINER}}})", "up"),
        ),
        stat(
            "Items in the model",
            "Items in the snapshot each worker ranks with.",
            "short",
            (f"max(tidemail_item_model_items{{{WORKER}}})", "items"),
        ),
        graph(
            "Trainer",
            "Worker batches of interactions the trainer learned, and item-model snapshots it published.",
            "ops",
            (f"sum(rate(tidemail_trainer_batches_total{{{TRAINER}}}[{RATE}]))", "batches learned"),
            (f"sum(rate(tidemail_item_model_snapshots_total{{{TRAINER}}}[{RATE}]))", "snapshots published"),
        ),
    ]


def _hit_rates() -> list[Panel]:
    return [
        graph(
            "Hit rate at 10 on products new to the user",
            "Share of sampled first touches of a product (not in the user's history, cart or orders) that was "
            "in each recommender's top 10, measured before learning them: what a recommendation email earns its "
            "place with (alert: model below popularity for an hour).",
            "percentunit",
            (
                f"sum by (recommender) (rate(tidemail_reco_new_hits_total{{{WORKER}}}[{QUALITY_WINDOW}]))"
                f" / ignoring(recommender) group_left"
                f" sum(rate(tidemail_reco_new_predictions_total{{{WORKER}}}[{QUALITY_WINDOW}]))",
                "{{recommender}}",
            ),
        ),
        graph(
            "Hit rate at 10 on all clicks and purchases",
            "Share of predicted clicks and purchases whose product was in the recommender's top 10, measured "
            "before learning them; mostly products the user already touched.",
            "percentunit",
            (
                f"sum by (recommender) (rate(tidemail_reco_hits_total{{{WORKER}}}[{QUALITY_WINDOW}]))"
                f" / ignoring(recommender) group_left"
                f" sum(rate(tidemail_reco_predictions_total{{{WORKER}}}[{QUALITY_WINDOW}]))",
                "{{recommender}}",
            ),
        ),
    ]


def _cache_and_experiments() -> list[Panel]:
    return [
        graph(
            "Prediction cache hit ratio",
            "API prediction lookups answered from Redis; unavailable ones were computed from the tables.",
            "percentunit",
            (
                f'sum(rate(tidemail_prediction_cache_total{{{WORKER}, outcome="hit"}}[{RATE}]))'
                f" / sum(rate(tidemail_prediction_cache_total{{{WORKER}}}[{RATE}]))",
                "hit ratio",
            ),
        ),
        graph(
            "Prediction cache lookups",
            "By outcome: hit, miss, unavailable (Redis down).",
            "ops",
            (f"sum by (outcome) (rate(tidemail_prediction_cache_total{{{WORKER}}}[{RATE}]))", "{{outcome}}"),
        ),
        graph(
            "Experiment sends and outcomes",
            "Per experiment and variant (or holdout): sends, and the opens, clicks and purchases attributed to them.",
            "ops",
            (
                f"sum by (experiment, variant, outcome) (rate(tidemail_experiment_outcomes_total{{{WORKER}}}[{RATE}]))",
                "{{experiment}} {{variant}} {{outcome}}",
            ),
        ),
    ]
