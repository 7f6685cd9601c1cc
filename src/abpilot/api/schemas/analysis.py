"""Response bodies of the analysis endpoints."""

from __future__ import annotations

from pydantic import BaseModel

from abpilot.stats.analysis import Analysis
from abpilot.stats.power import SampleSize


class VariantAnalysisRead(BaseModel):
    key: str
    is_control: bool
    units: int
    conversions: int
    conversion_rate: float | None
    ci: tuple[float, float] | None
    mean: float | None
    variance: float | None
    difference: float | None
    difference_ci: tuple[float, float] | None
    lift: float | None
    lift_ci: tuple[float, float] | None
    p_value: float | None
    p_value_z: float | None
    p_value_adjusted: float | None
    chance_to_beat_control: float | None
    probability_best: float | None
    expected_loss: float | None
    credible_interval: tuple[float, float] | None
    significant: bool


class SrmRead(BaseModel):
    p_value: float | None
    flagged: bool
    observed: list[int]
    expected: list[float]
    reason: str | None


class WinnerRead(BaseModel):
    key: str
    name: str
    conversion_rate: float | None
    mean: float | None
    p_value: float
    relative_improvement: float


class SampleSizeProgressRead(BaseModel):
    required_per_variant: int | None
    progress: float | None
    basis: str


class AnalysisRead(BaseModel):
    experiment_id: str
    metric: str
    kind: str
    method: str
    bayesian_method: str | None
    control: str
    alpha: float
    correction: str
    sequential: bool
    family_size: int
    stratified: bool
    periods: int
    basis: str | None
    variants: list[VariantAnalysisRead]
    srm: SrmRead
    winner: WinnerRead | None
    reason: str
    message: str
    sample_size: SampleSizeProgressRead

    @classmethod
    def of(cls, experiment_id: str, analysis: Analysis) -> AnalysisRead:
        winner = analysis.winner
        return cls(
            experiment_id=experiment_id,
            metric=analysis.metric,
            kind=analysis.kind,
            method=analysis.method,
            bayesian_method=analysis.bayesian_method,
            control=analysis.control,
            alpha=analysis.alpha,
            correction=analysis.correction,
            sequential=analysis.sequential,
            family_size=analysis.family_size,
            stratified=analysis.stratified,
            periods=analysis.periods,
            basis=analysis.basis,
            variants=[
                VariantAnalysisRead.model_validate(v, from_attributes=True)
                for v in analysis.variants
            ],
            srm=SrmRead(
                p_value=analysis.srm.p_value,
                flagged=analysis.srm.flagged,
                observed=list(analysis.srm.observed),
                expected=list(analysis.srm.expected),
                reason=analysis.srm.reason,
            ),
            winner=None
            if winner is None
            else WinnerRead.model_validate(winner, from_attributes=True),
            reason=analysis.reason.value,
            message=analysis.message,
            sample_size=SampleSizeProgressRead.model_validate(
                analysis.sample_size, from_attributes=True
            ),
        )


class SampleSizeRead(BaseModel):
    required_per_variant: int
    total: int
    baseline: float
    target: float
    effect_size: float
    alpha: float
    comparison_alpha: float
    power: float
    variants: int

    @classmethod
    def of(cls, plan: SampleSize) -> SampleSizeRead:
        return cls.model_validate(plan, from_attributes=True)
