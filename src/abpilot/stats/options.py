"""Analysis settings of an experiment (``settings.analysis``), checked when the experiment is
created so that a bad configuration is refused, not silently repaired."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.domain.text import check_section
from abpilot.stats.corrections import Correction

DEFAULT_MDE = 0.1  # relative: plan to detect a 10% change of the control's rate or mean


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    alpha: float = 0.05
    correction: Correction = Correction.HOLM
    sequential: bool = False
    power: float = 0.8
    sample_size_per_variant: int | None = None
    mde: float = DEFAULT_MDE
    mde_relative: bool = True
    baseline: float | None = None
    prior: tuple[float, float] = (1.0, 1.0)
    tau: float | None = None

    def overridden(
        self,
        *,
        alpha: float | None = None,
        correction: Correction | str | None = None,
        sequential: bool | None = None,
    ) -> AnalysisOptions:
        """These options with a request's overrides, checked like the settings."""
        changed = replace(
            self,
            alpha=self.alpha if alpha is None else alpha,
            correction=self.correction if correction is None else _correction(correction),
            sequential=self.sequential if sequential is None else sequential,
        )
        _alpha(changed.alpha, "alpha")
        return changed


def _alpha(value: Any, name: str) -> float:
    """A significance level from 1e-6 to 0.5 (smaller ones underflow the sequential test)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1e-6 <= value <= 0.5:
        raise ValidationError(
            f"{name} must be a number from 1e-06 to 0.5 (got {value!r})", field=name
        )
    return float(value)


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValidationError(f"{name} must be a number in (0, 1) (got {value!r})", field=name)
    return float(value)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValidationError(f"{name} must be a number > 0 (got {value!r})", field=name)
    if not math.isfinite(value):
        raise ValidationError(f"{name} must be finite (got {value!r})", field=name)
    return float(value)


def _correction(value: Any) -> Correction:
    try:
        return Correction(value)
    except ValueError:
        allowed = ", ".join(c.value for c in Correction)
        raise ValidationError(
            f"correction must be one of {allowed} (got {value!r})", field="correction"
        ) from None


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false (got {value!r})", field=name)
    return value


def analysis_options(settings: Mapping[str, Any]) -> AnalysisOptions:
    """Parse ``settings["analysis"]``; every unknown key or bad value is a ValidationError."""
    where = "settings.analysis"
    raw = check_section(settings.get("analysis", {}), where, AnalysisOptions.__dataclass_fields__)
    options = AnalysisOptions()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        field = f"{where}.{name}"
        if name == "alpha":
            values[name] = _alpha(value, field)
        elif name == "power":
            values[name] = _fraction(value, field)
        elif name == "correction":
            values[name] = _correction(value)
        elif name in {"sequential", "mde_relative"}:
            values[name] = _boolean(value, field)
        elif name == "sample_size_per_variant":
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValidationError(f"{field} must be an integer >= 2", field=field)
            values[name] = value
        elif name in {"mde", "tau"}:
            values[name] = _positive(value, field)
        elif name == "baseline":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"{field} must be a number", field=field)
            values[name] = float(value)
        elif name == "prior":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ValidationError(f"{field} must be [alpha, beta]", field=field)
            values[name] = (_positive(value[0], field), _positive(value[1], field))
    return replace(options, **values)
