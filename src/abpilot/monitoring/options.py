"""Monitoring thresholds of an experiment (``settings.monitoring``) over the service-wide
defaults (``MONITOR_MAX_ARM_DOMINANCE``, ``MONITOR_STALE_AFTER_HOURS``, ``MONITOR_MIN_RATE``,
``MONITOR_MIN_AVG_RATING``),
checked when the experiment is created so that a bad threshold is refused, not repaired."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.domain.text import check_section
from abpilot.stats.srm import SRM_THRESHOLD

DEFAULT_DAYS = 7  # days that a report's figures about a time range cover

MAX_STALE_HOURS = 24 * 366


class Harm(enum.StrEnum):
    """Which change of a guardrail metric, variant against control, does harm."""

    DECREASE = "decrease"  # revenue, retention: lower is worse
    INCREASE = "increase"  # errors, latency, unsubscribes: higher is worse


@dataclass(frozen=True, slots=True)
class Guardrail:
    metric: str
    harm: Harm = Harm.DECREASE


@dataclass(frozen=True, slots=True)
class MonitoringOptions:
    srm_p: float = SRM_THRESHOLD
    max_arm_dominance: float = 0.70
    min_rate: float | None = None  # None: the min_rate check is skipped
    min_units: int = 100  # units (decisions, ratings) a figure needs before it is judged
    min_avg_rating: float | None = None  # contextual bandits; None: the check is skipped
    stale_after_hours: float = 24.0
    guardrails: tuple[Guardrail, ...] = ()


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number (got {value!r})", field=field)
    return float(value)


def _fraction(value: Any, field: str, *, closed: bool = False) -> float:
    number = _number(value, field)
    if not (0 < number <= 1 if closed else 0 < number < 1):
        bound = "in (0, 1]" if closed else "in (0, 1)"
        raise ValidationError(f"{field} must be a number {bound} (got {value!r})", field=field)
    return number


def _guardrails(value: Any, field: str, metrics: set[str] | None) -> tuple[Guardrail, ...]:
    """A list of metric keys (a decrease is harmful) or an object metric -> "decrease" or
    "increase"."""
    if isinstance(value, list):
        pairs: list[tuple[Any, Any]] = [(metric, Harm.DECREASE.value) for metric in value]
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ValidationError(
            f"{field} must be a list of metric keys or an object of metric key -> "
            f"'decrease' or 'increase' (got {value!r})",
            field=field,
        )
    found: list[Guardrail] = []
    for i, (metric, harm) in enumerate(pairs):
        where = f"{field}[{i}]" if isinstance(value, list) else f"{field}.{metric}"
        if not isinstance(metric, str):
            raise ValidationError(f"{where} must be a metric key (got {metric!r})", field=where)
        if metrics is not None and metric not in metrics:
            known = ", ".join(sorted(metrics))
            raise ValidationError(
                f"{where} names '{metric[:100]}', which is not one of the experiment's metrics "
                f"({known})",
                field=where,
            )
        if metric in {g.metric for g in found}:
            raise ValidationError(f"{where} lists '{metric}' twice", field=where)
        try:
            found.append(Guardrail(metric, Harm(harm)))
        except ValueError:
            raise ValidationError(
                f"{where} must be 'decrease' or 'increase' (got {harm!r})", field=where
            ) from None
    return tuple(found)


def monitoring_options(
    settings: Mapping[str, Any],
    defaults: MonitoringOptions = MonitoringOptions(),
    *,
    metrics: Iterable[str] | None = None,
    arms: int | None = None,
) -> MonitoringOptions:
    """Parse ``settings["monitoring"]`` over ``defaults``; a bad key or value is a
    ValidationError naming the field. ``metrics`` (the experiment's metric keys) and ``arms``
    (its number of variants) check guardrails and ``max_arm_dominance`` when given."""
    where = "settings.monitoring"
    known = (f.name for f in fields(MonitoringOptions))
    raw = check_section(settings.get("monitoring", {}), where, known)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        field = f"{where}.{name}"
        if name == "srm_p":
            values[name] = _fraction(value, field)
        elif name == "max_arm_dominance":
            values[name] = _fraction(value, field, closed=True)
            if arms is not None and values[name] < 1 / arms:
                raise ValidationError(
                    f"{field} must be at least 1/{arms} = {1 / arms:.4g} for {arms} arms, or "
                    f"some arm always exceeds it (got {value!r})",
                    field=field,
                )
        elif name == "min_rate":
            values[name] = None if value is None else _fraction(value, field)
        elif name == "min_avg_rating":
            values[name] = None if value is None else _number(value, field)
        elif name == "min_units":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(
                    f"{field} must be an integer >= 1 (got {value!r})", field=field
                )
            values[name] = value
        elif name == "stale_after_hours":
            hours = _number(value, field)
            if not 0 < hours <= MAX_STALE_HOURS:
                raise ValidationError(
                    f"{field} must be a number of hours in (0, {MAX_STALE_HOURS}] (got {value!r})",
                    field=field,
                )
            values[name] = hours
        elif name == "guardrails":
            values[name] = _guardrails(value, field, None if metrics is None else set(metrics))
    return replace(defaults, **values)
