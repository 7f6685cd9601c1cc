"""Experiments, variants and metrics as immutable values, with the status lifecycle."""

from __future__ import annotations

import enum
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from abpilot.domain.errors import InvalidTransition, ValidationError

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WEIGHT_TOLERANCE = 1e-6
MAX_VARIANTS = 100
MAX_METRICS = 50
DEFAULT_METRIC = "conversion"


class ExperimentType(enum.StrEnum):
    AB_TEST = "ab_test"
    BANDIT = "bandit"
    CONTEXTUAL_BANDIT = "contextual_bandit"
    INTERLEAVING = "interleaving"


class ExperimentStatus(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"


class MetricKind(enum.StrEnum):
    BINARY = "binary"
    VALUE = "value"
    RATIO = "ratio"  # the ratio of two other metrics' per-unit sums (numerator / denominator)


class MetricRole(enum.StrEnum):
    """What a metric is for: a goal (the first metric is the primary one, the decision's), or a
    guardrail, which must not get worse than its inferiority ``margin``."""

    GOAL = "goal"
    GUARDRAIL = "guardrail"


_TRANSITIONS: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    ExperimentStatus.DRAFT: frozenset({ExperimentStatus.RUNNING}),
    ExperimentStatus.RUNNING: frozenset({ExperimentStatus.PAUSED, ExperimentStatus.COMPLETED}),
    ExperimentStatus.PAUSED: frozenset({ExperimentStatus.RUNNING, ExperimentStatus.COMPLETED}),
    ExperimentStatus.COMPLETED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    name: str
    weight: float
    is_control: bool = False
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric. ``higher_is_better`` is its direction (false for latency or churn). A guardrail
    has an inferiority ``margin``: the harm it tolerates, as a difference of rates or means, or
    (``margin_relative``) as a fraction of the control's."""

    key: str
    kind: MetricKind = MetricKind.BINARY
    description: str = ""
    role: MetricRole = MetricRole.GOAL
    higher_is_better: bool = True
    margin: float | None = None
    margin_relative: bool = False
    # Issue 18: the covariate the metric is adjusted by (a name exposures carry in
    # ``covariates``), its cap (a value metric's per-unit totals above it count as it: an
    # absolute number, or a percentile of the totals computed at analysis), and a ratio's parts.
    covariate: str | None = None
    cap_absolute: float | None = None
    cap_percentile: float | None = None
    numerator: str | None = None
    denominator: str | None = None


FEATUREVISOR = "featurevisor"  # the settings key of a FeatureVisor companion feature


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    key: str
    name: str
    type: ExperimentType
    status: ExperimentStatus
    traffic_allocation: float
    salt: str
    variants: tuple[Variant, ...]
    metrics: tuple[Metric, ...]
    created_at: datetime
    updated_at: datetime
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    winner: str | None = None
    version: int = 1
    # Created without declared metrics: a conversion naming a metric the experiment does not
    # have yet registers it (see ``abpilot.service.specs.new_metric``) instead of being refused.
    open_metrics: bool = False
    # The unit dimensions the experiment breaks its counters down by (issue 18, segments).
    dimensions: tuple[str, ...] = ()

    @property
    def experiment_id(self) -> str:
        """The id, under the name OpenInsight's experiments give it."""
        return self.id

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.is_control)

    @property
    def primary_metric(self) -> Metric:
        return self.metrics[0]

    @property
    def featurevisor_feature(self) -> bool:
        """A FeatureVisor companion feature: the official SDKs choose its variations by their own
        bucketing, so abpilot never assigns its units by its hash."""
        return isinstance(self.settings.get(FEATUREVISOR), Mapping)

    def variant(self, key: str) -> Variant | None:
        return next((v for v in self.variants if v.key == key), None)

    def metric(self, key: str) -> Metric | None:
        return next((m for m in self.metrics if m.key == key), None)

    def with_status(self, target: ExperimentStatus, *, now: datetime) -> Experiment:
        """Return the experiment moved to ``target``, or raise ``InvalidTransition``."""
        if target not in _TRANSITIONS[self.status]:
            allowed = sorted(_TRANSITIONS[self.status])
            hint = f"allowed: {', '.join(allowed)}" if allowed else f"{self.status} is final"
            raise InvalidTransition(
                f"cannot move experiment '{self.key}' from {self.status} to {target} ({hint})",
                field="status",
            )
        started_at = self.started_at or (now if target is ExperimentStatus.RUNNING else None)
        ended_at = now if target is ExperimentStatus.COMPLETED else None
        return replace(
            self, status=target, started_at=started_at, ended_at=ended_at, updated_at=now
        )


def validate_key(value: str, *, field_name: str) -> str:
    if not KEY_PATTERN.match(value):
        raise ValidationError(
            f"{field_name} must be 1 to 100 characters of letters, digits, '_', '-' or '.', "
            f"starting with a letter or digit (got {value[:120]!r})",
            field=field_name,
        )
    return value


def key_from_name(name: str) -> str:
    """A key made from a name: lowercase ASCII letters and digits, ``_`` and ``.`` kept, every
    other run of characters one ``-`` ("Homepage Button Color Test" ->
    "homepage-button-color-test"); empty when the name has no letter or digit to keep."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_.]+", "-", ascii_text.lower()).strip("-_.")
    return slug[:100].rstrip("-_.")


def normalise_variants(variants: Sequence[Variant]) -> tuple[Variant, ...]:
    """Check variant rules and mark the first variant as control when none is marked."""
    if len(variants) < 2:
        raise ValidationError(
            f"an experiment needs at least 2 variants (got {len(variants)})", field="variants"
        )
    if len(variants) > MAX_VARIANTS:
        raise ValidationError(
            f"an experiment may have at most {MAX_VARIANTS} variants (got {len(variants)})",
            field="variants",
        )
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        validate_key(variant.key, field_name=f"variants[{i}].key")
        if variant.key in seen:
            raise ValidationError(
                f"variant keys must be unique ('{variant.key}' appears twice)",
                field=f"variants[{i}].key",
            )
        seen.add(variant.key)
        if not math.isfinite(variant.weight) or variant.weight <= 0:
            raise ValidationError(
                f"variant weights must be > 0 (variant '{variant.key}' has {variant.weight})",
                field=f"variants[{i}].weight",
            )
    total = math.fsum(v.weight for v in variants)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValidationError(
            f"variant weights must sum to 1.0 (got {total:.6g})", field="variants"
        )
    controls = [v for v in variants if v.is_control]
    if len(controls) > 1:
        keys = ", ".join(v.key for v in controls)
        raise ValidationError(
            f"exactly one variant may be the control (marked: {keys})", field="variants"
        )
    if not controls:
        variants = [replace(variants[0], is_control=True), *variants[1:]]
    return tuple(variants)


def validate_traffic_allocation(value: float) -> float:
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValidationError(
            f"traffic_allocation must be in (0, 1] (got {value})", field="traffic_allocation"
        )
    return value


def normalise_metrics(metrics: Sequence[Metric]) -> tuple[Metric, ...]:
    """Default to one binary metric named 'conversion'; the first metric is the primary one."""
    if not metrics:
        return (Metric(key=DEFAULT_METRIC, kind=MetricKind.BINARY),)
    if len(metrics) > MAX_METRICS:
        raise ValidationError(
            f"an experiment may have at most {MAX_METRICS} metrics (got {len(metrics)})",
            field="metrics",
        )
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        validate_key(metric.key, field_name=f"metrics[{i}].key")
        if metric.key in seen:
            raise ValidationError(
                f"metric keys must be unique ('{metric.key}' appears twice)",
                field=f"metrics[{i}].key",
            )
        seen.add(metric.key)
        _check_role(metric, i)
    return tuple(metrics)


def _check_role(metric: Metric, i: int) -> None:
    """A guardrail names a finite margin >= 0 and is not the primary metric; a goal has none."""
    where = f"metrics[{i}]"
    if not isinstance(metric.higher_is_better, bool):
        raise ValidationError(
            f"{where}.higher_is_better must be true or false (got {metric.higher_is_better!r})",
            field=f"{where}.higher_is_better",
        )
    if not isinstance(metric.margin_relative, bool):
        raise ValidationError(
            f"{where}.margin_relative must be true or false (got {metric.margin_relative!r})",
            field=f"{where}.margin_relative",
        )
    if metric.role is not MetricRole.GUARDRAIL:
        if metric.margin is not None or metric.margin_relative:
            raise ValidationError(
                f"{where} is not a guardrail: only a metric with role 'guardrail' takes a margin",
                field=f"{where}.margin",
            )
        return
    if i == 0:
        raise ValidationError(
            f"{where} ('{metric.key}') is the primary metric, which the decision is about; it "
            "cannot be a guardrail (list a goal metric first)",
            field=f"{where}.role",
        )
    margin = metric.margin
    if (
        margin is None
        or isinstance(margin, bool)
        or not isinstance(margin, int | float)
        or not math.isfinite(margin)
        or margin < 0
    ):
        raise ValidationError(
            f"{where}.margin must be a finite number >= 0 for a guardrail: the harm it "
            f"tolerates (got {margin!r})",
            field=f"{where}.margin",
        )


def validate_experiment_key(key: str) -> str:
    validate_key(key, field_name="key")
    if UUID_PATTERN.match(key):
        raise ValidationError(
            "key must not look like an experiment id (a UUID); choose a readable key",
            field="key",
        )
    return key
