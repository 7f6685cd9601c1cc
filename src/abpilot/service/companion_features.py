"""FeatureVisor features as experiments of the core service: the experiment that learns a
feature's weights (its key, variants and settings) and the per-variation statistics read back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from abpilot.domain.experiment import KEY_PATTERN, Experiment, ExperimentType
from abpilot.featurevisor.datafile import Feature
from abpilot.service.allocation import AllocationResult
from abpilot.store.base import AllocationRecord, VariantCounters

METRIC = "conversion"


@dataclass(frozen=True, slots=True)
class VariationStats:
    value: str
    exposures: int
    conversions: int
    conversion_rate: float | None
    weight: float
    probability_best: float | None


@dataclass(frozen=True, slots=True)
class FeatureStats:
    datafile: str
    feature: str
    experiment_id: str
    experiment_key: str
    burn_in: bool
    period: int
    updated_at: datetime | None
    variations: tuple[VariationStats, ...]


def experiment_key(path: str, feature: Feature) -> str:
    payload = json.dumps([path, feature.key, list(feature.variations)], ensure_ascii=False)
    return "fv-" + hashlib.sha256(payload.encode()).hexdigest()[:24]


def variant_keys(feature: Feature) -> dict[str, str]:
    """Variation value -> variant key (the value itself where it is a valid, unique key)."""
    keys: dict[str, str] = {}
    for i, value in enumerate(feature.variations):
        fits = KEY_PATTERN.match(value) and value not in keys.values()
        keys[value] = value if fits else f"variation-{i}"
    return keys


def feature_experiment(key: str, path: str, feature: Feature) -> dict[str, Any]:
    """``create_experiment`` arguments of the running bandit that learns ``feature``."""
    keys = variant_keys(feature)
    weights = feature.weights if min(feature.weights) > 0 else None
    variants = [
        {
            "key": keys[value],
            "name": value,
            "weight": weights[i] if weights else 1 / len(feature.variations),
            "is_control": i == 0,
            "config": {"value": value},
        }
        for i, value in enumerate(feature.variations)
    ]
    return {
        "key": key,
        "name": f"{feature.key} ({path})",
        "type": ExperimentType.BANDIT,
        "description": f"FeatureVisor feature '{feature.key}' of datafile '{path}'",
        "variants": variants,
        "metrics": [{"key": METRIC, "kind": "binary"}],
        "settings": {
            "featurevisor": {
                "datafile": path,
                "feature": feature.key,
                "variations": [[keys[v], v] for v in feature.variations],
            }
        },
    }


def feature_stats(
    experiment: Experiment,
    *,
    counters: Mapping[str, VariantCounters],
    allocation: AllocationResult,
    latest: AllocationRecord | None,
) -> FeatureStats:
    """Exposures, conversions, weight in force and probability of being best per variation,
    from the experiment's counters, its allocation now and the latest stored weights."""
    origin = experiment.settings["featurevisor"]
    in_force = (
        dict(latest.weights)
        if latest is not None
        else {v.key: v.weight for v in experiment.variants}
    )
    probabilities = {a.key: a.probability_best for a in allocation.arms}
    variations = []
    for key, value in variations_of(experiment):
        counter = counters.get(key)
        exposures = counter.exposures if counter is not None else 0
        totals = counter.metrics.get(METRIC) if counter is not None else None
        conversions = totals.count if totals is not None else 0
        variations.append(
            VariationStats(
                value=value,
                exposures=exposures,
                conversions=conversions,
                conversion_rate=conversions / exposures if exposures else None,
                weight=in_force.get(key, 0.0),
                probability_best=probabilities.get(key),
            )
        )
    return FeatureStats(
        datafile=str(origin["datafile"]),
        feature=str(origin["feature"]),
        experiment_id=experiment.id,
        experiment_key=experiment.key,
        burn_in=allocation.burn_in,
        period=latest.period if latest is not None else 0,
        updated_at=latest.computed_at if latest is not None else None,
        variations=tuple(variations),
    )


def variations_of(experiment: Experiment) -> Sequence[tuple[str, str]]:
    """(variant key, variation value) pairs of a feature experiment."""
    pairs = experiment.settings["featurevisor"]["variations"]
    return [(str(k), str(v)) for k, v in pairs]
