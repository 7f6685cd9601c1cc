"""What the analysis of one metric takes: each variant's data (``Arm``), the metric's arms with
its periods and direction (``MetricInput``), and the small quantities every comparison derives
from them: a rate, the variance of a difference or of a lift, the baseline and the mixing scale
of the sequential test. Pure: plain values in, plain values out."""

from __future__ import annotations

from dataclasses import dataclass

from abpilot.stats.cuped import CovariateMoments, CovariatePeriod
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.ratio import RatioMoments
from abpilot.stats.stratified import Stratum


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's data on one metric. ``successes`` are converting units (or conversion events
    in event-level mode); ``mean``/``variance`` are per unit of the population ``n``."""

    key: str
    is_control: bool
    weight: float
    n: int
    successes: int
    mean: float | None
    variance: float | None
    name: str | None = None  # the variant's display name (the key when None)


@dataclass(frozen=True, slots=True)
class MetricInput:
    """A metric's data per arm; ``strata`` (periods of constant weights) when weights changed.
    ``basis`` names the population every arm's ``n`` counts (``abpilot.stats.summary``), and
    ``mixed_populations`` says why the arms' data do not measure the same population.
    ``higher_is_better`` is the metric's direction; a guardrail has a ``margin`` (the harm it
    tolerates, ``margin_relative`` a fraction of the control's). An adjusted metric names its
    ``covariate`` with each arm's ``covariate_moments`` (in the arms' order) and, when weights
    changed, each period's (``covariate_periods``). A ratio metric has each arm's
    ``ratio_moments`` (its arms' ``mean`` is then the ratio); a capped metric's arms are of
    its capped totals, ``cap`` the cap used."""

    key: str
    binary: bool
    arms: tuple[Arm, ...]
    strata: tuple[Stratum, ...] = ()
    basis: str | None = None
    mixed_populations: tuple[str, ...] = ()
    higher_is_better: bool = True
    margin: float | None = None
    margin_relative: bool = False
    covariate: str | None = None
    covariate_moments: tuple[CovariateMoments, ...] = ()
    covariate_periods: tuple[CovariatePeriod, ...] = ()
    ratio_moments: tuple[RatioMoments, ...] = ()
    cap: float | None = None  # the cap the arms' totals were capped at
    cap_percentile: float | None = None  # the quantile it is, for a percentile cap

    @property
    def stratified(self) -> bool:
        return len(self.strata) > 1


def control_index(metric: MetricInput) -> int:
    return next(i for i, a in enumerate(metric.arms) if a.is_control)


def rate(arm: Arm) -> float | None:
    return arm.successes / arm.n if arm.n > 0 else None


def difference_variance(metric: MetricInput, arm: Arm, control: Arm) -> float:
    if metric.binary:
        p_t, p_c = arm.successes / arm.n, control.successes / control.n
        return p_t * (1 - p_t) / arm.n + p_c * (1 - p_c) / control.n
    return (arm.variance or 0.0) / arm.n + (control.variance or 0.0) / control.n


def lift_variance(metric: MetricInput, arm: Arm, control: Arm) -> float:
    """Delta-method variance of mean_t / mean_c - 1 (as ``frequentist.relative_lift``)."""
    if metric.binary:
        m_t, m_c = arm.successes / arm.n, control.successes / control.n
        v_t, v_c = m_t * (1 - m_t) / arm.n, m_c * (1 - m_c) / control.n
    else:
        m_t, m_c = arm.mean or 0.0, control.mean or 0.0
        v_t, v_c = (arm.variance or 0.0) / arm.n, (control.variance or 0.0) / control.n
    return v_t / m_c**2 + m_t**2 * v_c / m_c**4


def baseline(metric: MetricInput, control: Arm, options: AnalysisOptions) -> float:
    if options.baseline is not None:
        return options.baseline
    if metric.binary:
        return control.successes / control.n if control.n > 0 else 0.0
    return control.mean if control.mean is not None else 0.0


def mixing_scale(metric: MetricInput, control: Arm, options: AnalysisOptions) -> float | None:
    """The mixing scale: ``tau``, else the absolute ``mde``, else the relative ``mde`` of the
    planned ``baseline`` (of the control's observed rate or mean without one). None when that is
    0 (a control rate of 0 and a relative mde): the test then needs ``tau`` to be set."""
    if options.tau is not None:
        return options.tau
    if not options.mde_relative:
        return options.mde
    effect = options.mde * abs(baseline(metric, control, options))
    return effect if effect > 0 else None
