"""Build and change experiment definitions from user input, refusing what breaks the rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from abpilot.bandits.config import BanditOptions, bandit_options
from abpilot.contextual.policy import contextual_options
from abpilot.domain.errors import ValidationError, WrongStatus
from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    MetricRole,
    Variant,
    key_from_name,
    normalise_metrics,
    normalise_variants,
    validate_experiment_key,
    validate_key,
    validate_traffic_allocation,
)
from abpilot.domain.inputs import aliased as aliased  # re-exported: the faces call it
from abpilot.domain.rules import cap_fields, check_dimensions, check_metric_fields
from abpilot.domain.text import check_json_object, check_number, check_text, text_problem
from abpilot.interleaving.options import interleaving_options
from abpilot.monitoring.options import monitoring_options
from abpilot.stats.options import analysis_options
from abpilot.warehouse.spec import SETTINGS_KEY as WAREHOUSE_SETTINGS
from abpilot.warehouse.spec import warehouse_options

T = TypeVar("T")
MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_UNIT_ID = 256
# The settings key of the record a completion against the decision leaves (``end_experiment``).
COMPLETION = "completion"


def check_unit_id(unit_id: str) -> str:
    return check_text(unit_id, field="unit_id", max_length=MAX_UNIT_ID)


def check_reference(experiment_ref: str, field: str = "experiment_id") -> str:
    """An experiment's id or key as given by a caller, checked before it reaches a store lookup
    (PostgreSQL refuses NUL; no store can look up text UTF-8 cannot carry). An id or key that is
    valid text but names nothing is the store's to answer (404)."""
    if not isinstance(experiment_ref, str):
        raise ValidationError(f"{field} must be a string (an experiment's id or key)", field=field)
    problem = text_problem(experiment_ref)
    if problem:
        raise ValidationError(f"{field} {problem}", field=field)
    return experiment_ref


BASIS_POINTS = 10_000


def derived_key(key: str | None, name: str | None, *, field: str) -> str:
    """``key`` when given, else the key made from ``name`` (``key_from_name``); a 422 naming
    ``field`` when neither gives one."""
    if key is not None:
        return key
    if name is None:
        raise ValidationError(f"{field} is required (or a name to make it from)", field=field)
    check_text(name, field=field.rsplit("key", 1)[0] + "name", max_length=MAX_NAME)
    made = key_from_name(name)
    if not made:
        raise ValidationError(
            f"no {field} can be made from the name {name[:100]!r} (it has no ASCII letter or "
            f"digit); give a {field}",
            field=field,
        )
    return made


def equal_weights(n: int) -> list[float]:
    """``n`` equal weights in basis points that sum to exactly 1 (3: 0.3334, 0.3333, 0.3333)."""
    base, extra = divmod(BASIS_POINTS, n)
    return [(base + (1 if i < extra else 0)) / BASIS_POINTS for i in range(n)]


def _variants(raws: Sequence[Variant | Mapping[str, Any]]) -> list[Variant]:
    """Variants from user input: a variant without a key takes it from its name; when no
    variant has a weight they split the traffic equally (a weight for some only is refused)."""
    if isinstance(raws, str | bytes | Mapping) or not isinstance(raws, Iterable):
        raise ValidationError("variants must be a list of variants", field="variants")
    raws = list(raws)
    weighted = [
        isinstance(raw, Variant) or (isinstance(raw, Mapping) and raw.get("weight") is not None)
        for raw in raws
    ]
    split = equal_weights(len(raws)) if raws and not any(weighted) else None
    found: list[Variant] = []
    derived: dict[str, int] = {}
    for i, raw in enumerate(raws):
        where = f"variants[{i}]"
        if isinstance(raw, Variant):
            variant = raw
        else:
            if not isinstance(raw, Mapping):
                raise ValidationError(f"{where} must be an object", field=where)
            if split is None and not weighted[i]:
                raise ValidationError(
                    f"{where} has no weight: give every variant a weight, or none for an equal "
                    "split",
                    field=f"{where}.weight",
                )
            raw_name = raw.get("name")
            key = derived_key(
                None if raw.get("key") is None else str(raw["key"]),
                None if raw_name is None else str(raw_name),
                field=f"{where}.key",
            )
            if raw.get("key") is None:
                other = derived.get(key)
                if other is not None:
                    raise ValidationError(
                        f"{where} has no key and its name gives the key '{key}', which "
                        f"variants[{other}] has too; give the variants keys",
                        field=f"{where}.key",
                    )
                derived[key] = i
            weight = split[i] if split is not None else raw["weight"]
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValidationError(f"{where}.weight must be a number", field=f"{where}.weight")
            variant = Variant(
                key=key,
                name=str(raw_name or key),
                weight=float(weight),
                is_control=bool(raw.get("is_control", False)),
                description=str(raw.get("description") or ""),
                config=raw.get("config") or {},
            )
        check_text(variant.name, field=f"{where}.name", max_length=MAX_NAME)
        check_text(
            variant.description,
            field=f"{where}.description",
            max_length=MAX_DESCRIPTION,
            required=False,
        )
        check_number(variant.weight, field=f"{where}.weight")
        found.append(
            replace(variant, config=check_json_object(variant.config, field=f"{where}.config"))
        )
    return found


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
            f"metric kind must be 'binary', 'value' or 'ratio' (got {kind!r})",
            field=f"metrics[{i}].kind",
        ) from None
    description = str(raw.get("description") or "")
    check_text(
        description, field=f"metrics[{i}].description", max_length=MAX_DESCRIPTION, required=False
    )
    role = raw.get("role", MetricRole.GOAL)
    try:
        role = MetricRole(role)
    except ValueError:
        raise ValidationError(
            f"metric role must be 'goal' or 'guardrail' (got {role!r:.100})",
            field=f"metrics[{i}].role",
        ) from None
    cap_absolute, cap_percentile = cap_fields(raw.get("cap"), f"metrics[{i}]")
    # The types of the rest are checked with the metric (``normalise_metrics``,
    # ``check_metric_fields``).
    return Metric(
        key=str(raw["key"]),
        kind=kind,
        description=description,
        role=role,
        higher_is_better=raw.get("higher_is_better", True),
        margin=raw.get("margin"),
        margin_relative=raw.get("margin_relative", False),
        covariate=raw.get("covariate"),
        cap_absolute=cap_absolute,
        cap_percentile=cap_percentile,
        numerator=raw.get("numerator"),
        denominator=raw.get("denominator"),
    )


def _type(value: ExperimentType | str, field: str = "type") -> ExperimentType:
    try:
        return ExperimentType(value)
    except ValueError:
        allowed = ", ".join(t.value for t in ExperimentType)
        raise ValidationError(
            f"unknown experiment type '{value}' (allowed: {allowed})", field=field
        ) from None


def experiment_type(
    type: ExperimentType | str | None, experiment_type: ExperimentType | str | None = None
) -> ExperimentType:
    """The type given as ``type`` or as its alias ``experiment_type`` (OpenInsight's name);
    ``ab_test`` when neither is given, a 422 when they disagree."""
    if experiment_type is None:
        return ExperimentType.AB_TEST if type is None else _type(type)
    alias = _type(experiment_type, "experiment_type")
    if type is not None and _type(type) is not alias:
        raise ValidationError(
            f"type '{type}' and experiment_type '{experiment_type}' disagree; give one of them",
            field="experiment_type",
        )
    return alias


def build_experiment(
    *,
    bandit_defaults: BanditOptions,
    id: str,
    key: str | None,
    name: str | None,
    type: ExperimentType | str,
    description: str,
    traffic_allocation: float,
    variants: Sequence[Variant | Mapping[str, Any]],
    metrics: Sequence[Metric | Mapping[str, Any]],
    salt: str | None,
    settings: Mapping[str, Any],
    now: datetime,
    open_metrics: bool | None = None,
    dimensions: Sequence[str] | None = None,
) -> Experiment:
    """A new draft. Without a key, the key is made from the name; without metrics, one binary
    ``conversion`` metric, and (unless ``open_metrics`` says otherwise) conversions may name new
    metrics, registered on first use."""
    key = derived_key(key, name, field="key")
    validate_experiment_key(key)
    name = key if name is None else name
    check_text(name, field="name", max_length=MAX_NAME)
    check_text(description, field="description", max_length=MAX_DESCRIPTION, required=False)
    if salt is not None:
        check_text(salt, field="salt", max_length=MAX_NAME)
    checked_settings = check_json_object(settings, field="settings")
    if COMPLETION in checked_settings:
        raise ValidationError(
            f"settings.{COMPLETION} is written by abpilot when an experiment is completed "
            "against its decision (with override); it cannot be set",
            field=f"settings.{COMPLETION}",
        )
    analysis_options(checked_settings)
    checked_variants = normalise_variants(_variants(variants))
    checked_metrics = normalise_metrics([_metric(m, i) for i, m in enumerate(metrics)])
    check_metric_fields(checked_metrics)
    checked_dimensions = check_dimensions(dimensions)
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
    if WAREHOUSE_SETTINGS in checked_settings:
        warehouse_options(checked_settings, checked_metrics, checked_dimensions)
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
        open_metrics=not metrics if open_metrics is None else open_metrics,
        dimensions=checked_dimensions,
    )


@dataclass(frozen=True, slots=True)
class ExperimentChanges:
    """Fields to change; None leaves a field as it is. Name and description may change in any
    status but completed, and metrics may be added while running or paused; everything else
    changes only in draft."""

    name: str | None = None
    description: str | None = None
    traffic_allocation: float | None = None
    variants: Sequence[Variant | Mapping[str, Any]] | None = None
    metrics: Sequence[Metric | Mapping[str, Any]] | None = None
    salt: str | None = None
    settings: Mapping[str, Any] | None = None
    dimensions: Sequence[str] | None = None

    DRAFT_ONLY = ("traffic_allocation", "variants", "metrics", "salt", "settings", "dimensions")


def updated_experiment(
    current: Experiment,
    changes: ExperimentChanges,
    *,
    now: datetime,
    bandit_defaults: BanditOptions,
) -> Experiment:
    touched = [f for f in ExperimentChanges.DRAFT_ONLY if getattr(changes, f) is not None]
    live = current.status in (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED)
    if live and changes.metrics is not None:
        _check_metrics_added(current, changes.metrics)
        touched.remove("metrics")
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
        # Metrics listed in a draft are declared; metrics added later leave the rule as it is.
        open_metrics=current.open_metrics and (live or changes.metrics is None),
        dimensions=_pick(changes.dimensions, current.dimensions),
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


def _check_metrics_added(
    current: Experiment, metrics: Sequence[Metric | Mapping[str, Any]]
) -> None:
    """While running or paused metrics may only be added: the new list starts with the current
    metrics, each as it is but for its description, in order (the first stays the primary one;
    a guardrail keeps its margin and direction)."""
    given = [_metric(m, i) for i, m in enumerate(metrics)]
    for i, metric in enumerate(current.metrics):
        if i >= len(given) or replace(given[i], description="") != replace(metric, description=""):
            keep = ", ".join(f"{m.key} ({m.kind})" for m in current.metrics)
            raise WrongStatus(
                f"experiment '{current.key}' is {current.status}: its metrics can only be added "
                f"to; list its metrics first, unchanged and in order ({keep}), then the new ones",
                field=f"metrics[{i}]",
            )


def new_metric(key: str, value: float | None) -> Metric:
    """The metric a conversion registers when it names a metric an experiment without declared
    metrics does not have yet: ``value`` when its value is other than 1, else ``binary``."""
    validate_key(key, field_name="metric")
    binary = value is None or value == 1
    return Metric(key=key, kind=MetricKind.BINARY if binary else MetricKind.VALUE)


def _pick(new: T | None, old: T) -> T:
    return old if new is None else new
