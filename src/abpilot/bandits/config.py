"""Bandit settings of an experiment (``settings.bandit``) over the service-wide defaults
(``PRIOR_ALPHA``, ``MIN_EXPOSURES_FOR_UPDATE``, ...), checked when the experiment is created."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.domain.text import check_section

FLOOR_PER_ARM = 0.01
FLOOR_TOTAL = 0.02


def default_min_weight(arms: int) -> float:
    """The floor when none is configured: 1% per arm, but no more than 2% of traffic in all
    (2% / arms), so the traffic held back for exploration does not grow with the number of arms.
    An A/B bandit keeps 1% per arm; ten arms keep 0.2% each instead of 10% in all."""
    return min(FLOOR_PER_ARM, FLOOR_TOTAL / max(arms, 1))


class Method(enum.StrEnum):
    EXACT = "exact"
    MONTE_CARLO = "monte_carlo"


@dataclass(frozen=True, slots=True)
class ThompsonConfig:
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    min_weight: float = 0.01
    min_trials: int = 100
    samples: int = 10_000
    method: Method = Method.EXACT


@dataclass(frozen=True, slots=True)
class BanditOptions:
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    min_weight: float | None = None  # None: ``default_min_weight`` for the number of arms
    min_exposures: int = 100
    method: Method = Method.EXACT
    samples: int = 10_000
    window_days: int = 14
    max_window_days: int = 30
    min_impressions: int = 200
    metric: str | None = None
    sticky: bool = True

    def floor(self, arms: int) -> float:
        """The weight floor per arm for ``arms`` arms."""
        return default_min_weight(arms) if self.min_weight is None else self.min_weight

    def thompson(self, arms: int) -> ThompsonConfig:
        return ThompsonConfig(
            prior_alpha=self.prior_alpha,
            prior_beta=self.prior_beta,
            min_weight=self.floor(arms),
            min_trials=self.min_exposures,
            samples=self.samples,
            method=self.method,
        )


def _number(value: Any, field: str, *, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{field} must be a number (got {value!r})", field=field)
    if value < low or (high is not None and value > high) or value != value:
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValidationError(f"{field} must be {bound} (got {value!r})", field=field)
    return float(value)


def _integer(value: Any, field: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValidationError(f"{field} must be an integer >= {low} (got {value!r})", field=field)
    return value


def bandit_options(
    settings: Mapping[str, Any], defaults: BanditOptions = BanditOptions(), *, arms: int = 2
) -> BanditOptions:
    """Parse ``settings["bandit"]`` over ``defaults``; a bad key or value is a ValidationError."""
    where = "settings.bandit"
    raw = check_section(settings.get("bandit", {}), where, (f.name for f in fields(BanditOptions)))
    values: dict[str, Any] = {}
    for name, value in raw.items():
        field = f"{where}.{name}"
        if name in {"prior_alpha", "prior_beta"}:
            values[name] = _number(value, field, low=1e-6, high=1e9)
        elif name == "min_weight":
            values[name] = _number(value, field, low=0.0, high=1.0 / arms)
        elif name in {"min_exposures", "min_impressions"}:
            values[name] = _integer(value, field, low=0)
        elif name == "samples":
            values[name] = min(_integer(value, field, low=100), 1_000_000)
        elif name in {"window_days", "max_window_days"}:
            values[name] = _integer(value, field, low=1)
        elif name == "method":
            try:
                values[name] = Method(value)
            except ValueError:
                raise ValidationError(
                    f"{field} must be 'exact' or 'monte_carlo' (got {value!r})", field=field
                ) from None
        elif name == "metric":
            if not isinstance(value, str):
                raise ValidationError(f"{field} must be a metric key", field=field)
            values[name] = value
        elif name == "sticky":
            if not isinstance(value, bool):
                raise ValidationError(f"{field} must be true or false", field=field)
            values[name] = value
    options = replace(defaults, **values)
    if options.max_window_days < options.window_days:
        raise ValidationError(
            f"{where}.max_window_days ({options.max_window_days}) must be at least window_days "
            f"({options.window_days})",
            field=f"{where}.max_window_days",
        )
    if options.floor(arms) * arms > 1:
        raise ValidationError(
            f"{where}.min_weight {options.min_weight} is too large for {arms} arms",
            field=f"{where}.min_weight",
        )
    return options
