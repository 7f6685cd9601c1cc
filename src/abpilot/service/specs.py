"""Build and change experiment definitions from user input, refusing what breaks the rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from abpilot.bandits.config import BanditOptions, bandit_options
from abpilot.bandits.contextual import contextual_options
from abpilot.domain.errors import ValidationError, WrongStatus
from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    Variant,
    normalise_metrics,
    normalise_variants,
    validate_experiment_key,
    validate_traffic_allocation,
)
from abpilot.domain.text import check_json_object, check_number, check_text, text_problem
from abpilot.interleaving.options import interleaving_options
from abpilot.monitoring.options import monitoring_options
from abpilot.stats.options import analysis_options

T = TypeVar("T")
MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_UNIT_ID = 256


def check_unit_id(unit_id: str) -> str:
    return check_text(unit_id, field="unit_id", max_length=MAX_UNIT_ID)


def check_reference(experiment: str, field: str = "experiment_id") -> str:
    """An experiment's id or key as given by a caller, checked before it reaches a store lookup
    (PostgreSQL refuses NUL; no store can look up text UTF-8 cannot carry). An id or key that is
    valid text but names nothing is the store's to answer (404)."""
    if not isinstance(experiment, str):
        raise ValidationError(f"{field} must be a string (an experiment's id or key)", field=field)
    problem = text_problem(experiment)
    if problem:
        raise ValidationError(f"{field} {problem}", field=field)
    return experiment


def _variant(raw: Variant | Mapping[str, Any], i: int) -> Variant:
    if isinstance(raw, Variant):
        variant = raw
    else:
        if "key" not in raw or "weight" not in raw:
            raise ValidationError("each variant needs a key and a weight", field=f"variants[{i}]")
        variant = Variant(
            key=str(raw["key"]),
            name=str(raw.get("name") or raw["key"]),
            weight=float(raw["weight"]),
            is_control=bool(raw.get("is_control", False)),
            description=str(raw.get("description") or ""),
            config=raw.get("config") or {},
        )
    where = f"variants[{i}]"
    check_text(variant.name, field=f"{where}.name", max_length=MAX_NAME)
    check_text(
        variant.description,
        field=f"{where}.description",
        max_length=MAX_DESCRIPTION,
        required=False,
    )
    check_number(variant.weight, field=f"{where}.weight")
    return replace(variant, config=check_json_object(variant.config, field=f"{where}.config"))


def _metric(raw: Metric | Mapping[str, Any], i: int) -> Metric:
    if isinstance(raw, Metric):
        return raw
    if "key" not in raw:
        raise ValidationError("each metric needs a key", field=f"metrics[{i}]")
    kind = raw.get("kind", MetricKind.BINARY)
    try:
        kind = MetricKind(kind)
    except ValueError:
        raise ValidationError(
            f"metric kind must be 'binary' or 'value' (got {kind!r})", field=f"metrics[{i}].kind"
        ) from None
    description = str(raw.get("description") or "")
    check_text(
        description, field=f"metrics[{i}].description", max_length=MAX_DESCRIPTION, required=False
    )
    return Metric(key=str(raw["key"]), kind=kind, description=description)


def _type(value: ExperimentType | str) -> ExperimentType:
    try:
        return ExperimentType(value)
    except ValueError:
        allowed = ", ".join(t.value for t in ExperimentType)
        raise ValidationError(
            f"unknown experiment type '{value}' (allowed: {allowed})", field="type"
        ) from None


def build_experiment(
    *,
    bandit_defaults: BanditOptions,
    id: str,
    key: str,
    name: str | None,
    type: ExperimentType | str,
    description: str,
    traffic_allocation: float,
    variants: Sequence[Variant | Mapping[str, Any]],
    metrics: Sequence[Metric | Mapping[str, Any]],
    salt: str | None,
    settings: Mapping[str, Any],
    now: datetime,
) -> Experiment:
    validate_experiment_key(key)
    name = key if name is None else name
    check_text(name, field="name", max_length=MAX_NAME)
    check_text(description, field="description", max_length=MAX_DESCRIPTION, required=False)
    if salt is not None:
        check_text(salt, field="salt", max_length=MAX_NAME)
    checked_settings = check_json_object(settings, field="settings")
    analysis_options(checked_settings)
    checked_variants = normalise_variants([_variant(v, i) for i, v in enumerate(variants)])
    checked_metrics = normalise_metrics([_metric(m, i) for i, m in enumerate(metrics)])
    experiment_type = _type(type)
    if experiment_type is ExperimentType.BANDIT or "bandit" in checked_settings:
        options = bandit_options(checked_settings, bandit_defaults, arms=len(checked_variants))
        if options.metric is not None and options.metric not in {m.key for m in checked_metrics}:
            raise ValidationError(
                f"settings.bandit.metric '{options.metric}' is not one of the experiment's metrics",
                field="settings.bandit.metric",
            )
    if experiment_type is ExperimentType.CONTEXTUAL_BANDIT or "contextual" in checked_settings:
        contextual_options(checked_settings, [v.key for v in checked_variants])
    if experiment_type is ExperimentType.INTERLEAVING:
        interleaving_options(checked_settings, len(checked_variants))
    if "monitoring" in checked_settings:
        monitoring_options(
            checked_settings,
            metrics=[m.key for m in checked_metrics],
            arms=len(checked_variants),
        )
    return Experiment(
        id=id,
        key=key,
        name=name,
        type=experiment_type,
        status=ExperimentStatus.DRAFT,
        traffic_allocation=validate_traffic_allocation(float(traffic_allocation)),
        salt=salt or key,
        variants=checked_variants,
        metrics=checked_metrics,
        settings=checked_settings,
        created_at=now,
        updated_at=now,
        description=description,
    )


@dataclass(frozen=True, slots=True)
class ExperimentChanges:
    """Fields to change; None leaves a field as it is. Name and description may change in any
    status but completed; everything else only in draft."""

    name: str | None = None
    description: str | None = None
    traffic_allocation: float | None = None
    variants: Sequence[Variant | Mapping[str, Any]] | None = None
    metrics: Sequence[Metric | Mapping[str, Any]] | None = None
    salt: str | None = None
    settings: Mapping[str, Any] | None = None

    DRAFT_ONLY = ("traffic_allocation", "variants", "metrics", "salt", "settings")


def updated_experiment(
    current: Experiment,
    changes: ExperimentChanges,
    *,
    now: datetime,
    bandit_defaults: BanditOptions,
) -> Experiment:
    touched = [f for f in ExperimentChanges.DRAFT_ONLY if getattr(changes, f) is not None]
    if touched and current.status is not ExperimentStatus.DRAFT:
        raise WrongStatus(
            f"{', '.join(touched)} can change only while the experiment is a draft "
            f"('{current.key}' is {current.status})",
            field=touched[0],
        )
    if current.status is ExperimentStatus.COMPLETED:
        raise WrongStatus(
            f"experiment '{current.key}' is completed and cannot change", field="status"
        )
    rebuilt = build_experiment(
        bandit_defaults=bandit_defaults,
        id=current.id,
        key=current.key,
        name=_pick(changes.name, current.name),
        type=current.type,
        description=_pick(changes.description, current.description),
        traffic_allocation=_pick(changes.traffic_allocation, current.traffic_allocation),
        variants=_pick(changes.variants, current.variants),
        metrics=_pick(changes.metrics, current.metrics),
        salt=_pick(changes.salt, current.salt),
        settings=_pick(changes.settings, current.settings),
        now=now,
    )
    return replace(
        rebuilt,
        status=current.status,
        created_at=current.created_at,
        started_at=current.started_at,
        ended_at=current.ended_at,
        winner=current.winner,
        version=current.version,
    )


def _pick(new: T | None, old: T) -> T:
    return old if new is None else new
