"""Issue 18's inputs: the unit facts an exposure carries (covariates, dimensions), the metric
fields that use them (covariate, cap, ratio parts), the experiment's dimensions, and the rules
the counting core applies for them (``ExperimentRules``, built once per cached definition).

Limits (documented in docs/architecture.md §2):

- an exposure carries at most ``MAX_COVARIATES`` covariates, named like metric keys, each a
  finite number, and at most ``MAX_DIMENSIONS`` dimensions, named like metric keys, each a value
  of 1 to ``MAX_DIMENSION_VALUE`` printable characters without ``|``;
- an experiment declares at most ``MAX_DIMENSIONS`` dimensions; each keeps its first
  ``MAX_SEGMENTS`` values (in the order the store admitted them), the rest count as ``other``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from abpilot.domain.errors import ValidationError

if TYPE_CHECKING:
    from abpilot.domain.experiment import Experiment, Metric

MAX_COVARIATES = 20
MAX_DIMENSIONS = 5
MAX_SEGMENTS = 20
MAX_DIMENSION_VALUE = 64
OTHER = "other"  # the segment of the values past the first MAX_SEGMENTS


@dataclass(frozen=True, slots=True)
class ExperimentRules:
    """What the counting core keeps beyond the plain counters for one experiment: the covariate
    of each adjusted metric, the absolute cap of each capped one, the (numerator, denominator)
    of each ratio, the declared dimensions and every metric key (a unit's totals so far join
    its segment at its first exposure). ``binary`` holds the adjusted metrics of kind binary:
    their y per unit is 1 once the unit converted, whatever its conversions' values or number
    (the cross sum grows by x at its first conversion only)."""

    covariates: Mapping[str, str] = field(default_factory=dict)
    binary: frozenset[str] = frozenset()
    caps: Mapping[str, float] = field(default_factory=dict)
    ratios: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    dimensions: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    segments: int = MAX_SEGMENTS

    @property
    def empty(self) -> bool:
        return not (self.covariates or self.caps or self.ratios or self.dimensions)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.covariates.values())))

    def partners(self, metric: str) -> list[str]:
        """The other part of every ratio ``metric`` is a part of."""
        found = [d for n, d in self.ratios.values() if n == metric]
        return found + [n for n, d in self.ratios.values() if d == metric]


NO_RULES = ExperimentRules()


def experiment_rules(experiment: Experiment) -> ExperimentRules | None:
    """The counting rules of an experiment, or None when it needs none (the plain path)."""
    from abpilot.domain.experiment import MetricKind

    rules = ExperimentRules(
        covariates={m.key: m.covariate for m in experiment.metrics if m.covariate},
        binary=frozenset(
            m.key for m in experiment.metrics if m.covariate and m.kind is MetricKind.BINARY
        ),
        caps={m.key: m.cap_absolute for m in experiment.metrics if m.cap_absolute is not None},
        ratios={
            m.key: (m.numerator or "", m.denominator or "")
            for m in experiment.metrics
            if m.kind is MetricKind.RATIO
        },
        dimensions=tuple(experiment.dimensions),
        metrics=tuple(m.key for m in experiment.metrics if m.kind is not MetricKind.RATIO),
    )
    return None if rules.empty else rules


def _name(value: Any, where: str) -> str:
    from abpilot.domain.experiment import validate_key

    if not isinstance(value, str):
        raise ValidationError(f"{where} must be a string", field=where)
    return validate_key(value, field_name=where)


def check_metric_fields(metrics: Sequence[Metric]) -> None:
    """A covariate is a name; a cap (absolute > 0 or a percentile in (0, 1), not both) belongs
    to a value metric; a ratio names two other non-ratio metrics of the experiment."""
    from abpilot.domain.experiment import MetricKind

    kinds = {m.key: m.kind for m in metrics}
    for i, m in enumerate(metrics):
        where = f"metrics[{i}]"
        if m.covariate is not None:
            _name(m.covariate, f"{where}.covariate")
            if m.kind is MetricKind.RATIO:
                raise ValidationError(
                    f"{where} is a ratio metric: adjust its parts instead",
                    field=f"{where}.covariate",
                )
        _check_cap(m, where)
        if m.kind is MetricKind.RATIO:
            for part in ("numerator", "denominator"):
                named = getattr(m, part)
                if not isinstance(named, str) or kinds.get(named) in (None, MetricKind.RATIO):
                    raise ValidationError(
                        f"{where}.{part} must name another (binary or value) metric of the "
                        f"experiment (got {named!r:.100})",
                        field=f"{where}.{part}",
                    )
        elif m.numerator is not None or m.denominator is not None:
            raise ValidationError(
                f"{where} is not a ratio metric: only kind 'ratio' takes a numerator and a "
                "denominator",
                field=f"{where}.numerator",
            )


def _check_cap(m: Metric, where: str) -> None:
    from abpilot.domain.experiment import MetricKind

    if m.cap_absolute is None and m.cap_percentile is None:
        return
    field_name = f"{where}.cap"
    if m.kind is not MetricKind.VALUE:
        raise ValidationError(f"{where}: only a value metric takes a cap", field=field_name)
    if m.cap_absolute is not None and m.cap_percentile is not None:
        raise ValidationError(f"{field_name} is absolute or percentile, not both", field=field_name)
    if m.cap_absolute is not None and not (_number(m.cap_absolute) and m.cap_absolute > 0):
        raise ValidationError(
            f"{field_name}.absolute must be a finite number > 0 (got {m.cap_absolute!r:.100})",
            field=f"{field_name}.absolute",
        )
    if m.cap_percentile is not None and not (
        _number(m.cap_percentile) and 0 < m.cap_percentile < 1
    ):
        raise ValidationError(
            f"{field_name}.percentile must be a number in (0, 1) (got {m.cap_percentile!r:.100})",
            field=f"{field_name}.percentile",
        )


def cap_fields(raw: Any, where: str) -> tuple[float | None, float | None]:
    """(absolute, percentile) from a metric's ``"cap"`` input: ``{"absolute": 500}`` or
    ``{"percentile": 0.99}`` (None: no cap)."""
    if raw is None:
        return None, None
    if not isinstance(raw, Mapping) or set(raw) - {"absolute", "percentile"} or len(raw) != 1:
        raise ValidationError(
            f'{where}.cap must be {{"absolute": number}} or {{"percentile": number}}',
            field=f"{where}.cap",
        )
    return raw.get("absolute"), raw.get("percentile")


def cap_input(metric: Metric) -> dict[str, float] | None:
    """The ``"cap"`` a metric shows (the inverse of ``cap_fields``)."""
    if metric.cap_absolute is not None:
        return {"absolute": metric.cap_absolute}
    if metric.cap_percentile is not None:
        return {"percentile": metric.cap_percentile}
    return None


def check_dimensions(raw: Any) -> tuple[str, ...]:
    """An experiment's declared dimensions: at most ``MAX_DIMENSIONS`` distinct names."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise ValidationError("dimensions must be a list of names", field="dimensions")
    if len(raw) > MAX_DIMENSIONS:
        raise ValidationError(
            f"an experiment breaks down by at most {MAX_DIMENSIONS} dimensions (got {len(raw)})",
            field="dimensions",
        )
    names = tuple(_name(d, f"dimensions[{i}]") for i, d in enumerate(raw))
    if len(set(names)) != len(names):
        raise ValidationError("dimensions must be distinct", field="dimensions")
    return names


def _facts(raw: Any, field_name: str, kind: str, limit: int) -> list[tuple[Any, Any]]:
    """An exposure's object of unit facts: its (name, value) pairs, at most ``limit``."""
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{field_name} must be an object of {kind}", field=field_name)
    if len(raw) > limit:
        raise ValidationError(
            f"{field_name} holds at most {limit} names (got {len(raw)})", field=field_name
        )
    return list(raw.items())


def check_covariates(raw: Any, field_name: str = "covariates") -> dict[str, float] | None:
    """An exposure's covariates: at most ``MAX_COVARIATES`` names, each a finite number."""
    if raw is None:
        return None
    found: dict[str, float] = {}
    for name, value in _facts(raw, field_name, "numbers", MAX_COVARIATES):
        where = f"{field_name}.{str(name)[:100]}"
        _name(name, field_name)
        if not _number(value):
            raise ValidationError(f"{where} must be a finite number", field=where)
        found[name] = float(value)
    return found or None


def check_unit_dimensions(raw: Any, field_name: str = "dimensions") -> dict[str, str] | None:
    """An exposure's dimensions: at most ``MAX_DIMENSIONS`` names, each a short value."""
    if raw is None:
        return None
    found: dict[str, str] = {}
    for name, value in _facts(raw, field_name, "strings", MAX_DIMENSIONS):
        where = f"{field_name}.{str(name)[:100]}"
        _name(name, field_name)
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= MAX_DIMENSION_VALUE
            or not value.isprintable()
            or "|" in value
        ):
            raise ValidationError(
                f"{where} must be 1 to {MAX_DIMENSION_VALUE} printable characters without '|'",
                field=where,
            )
        found[name] = value
    return found or None


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
