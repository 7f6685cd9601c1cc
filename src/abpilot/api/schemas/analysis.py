"""Response bodies of the analysis endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from abpilot.stats.analysis import Analysis
from abpilot.stats.decision import Decision
from abpilot.stats.power import SampleSize
from abpilot.stats.segments import SegmentBreakdown


class GuardrailRead(BaseModel):
    """A variant on a guardrail metric: ``estimate`` is the difference with the control (the
    lift with a relative margin), ``bound`` its one-sided 1 - alpha bound on the harmful side,
    ``p_value`` the one-sided test of harm beyond the margin (``harm_ruled_out`` below alpha),
    ``harm_p_value`` the always-valid test of any harm (``harm_detected``); ``decides`` is
    false for a metric watched for harm only (``settings.monitoring.guardrails``)."""

    metric: str
    variant: str
    higher_is_better: bool
    margin: float
    margin_relative: bool
    estimate: float | None
    bound: float | None
    p_value: float | None
    harm_ruled_out: bool
    harm_p_value: float | None
    harm_detected: bool
    method: str
    decides: bool = True


class DecisionReasonRead(BaseModel):
    code: str
    message: str


class DecisionRead(BaseModel):
    """What to do: ``ship`` ``variant``, ``rollback`` ``variant``, ``continue`` or
    ``inconclusive``, from the primary metric, the guardrails, SRM and the plan."""

    action: Literal["ship", "rollback", "continue", "inconclusive"]
    variant: str | None
    reasons: list[DecisionReasonRead]

    @classmethod
    def of(cls, decision: Decision) -> DecisionRead:
        return cls(
            action=decision.action.value,
            variant=decision.variant,
            reasons=[
                DecisionReasonRead(code=r.code.value, message=r.message) for r in decision.reasons
            ],
        )


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
    guardrail: GuardrailRead | None = None
    # A metric with a covariate: the fields above are CUPED-adjusted; the unadjusted ones,
    # theta and the variance reduction (1 - adjusted / unadjusted variance) beside them.
    unadjusted_difference: float | None = None
    unadjusted_difference_ci: tuple[float, float] | None = None
    unadjusted_lift: float | None = None
    unadjusted_lift_ci: tuple[float, float] | None = None
    unadjusted_p_value: float | None = None
    theta: float | None = None
    variance_reduction: float | None = None


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
    higher_is_better: bool = True
    guardrails: list[GuardrailRead] = []
    decision: DecisionRead | None = None
    covariate: str | None = None
    cap: float | None = None
    cap_percentile: float | None = None
    # With ``?dimension=``: the analysis per segment (the fields above stay the overall one).
    segments: SegmentBreakdownRead | None = None

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
            higher_is_better=analysis.higher_is_better,
            guardrails=[
                GuardrailRead.model_validate(g, from_attributes=True) for g in analysis.guardrails
            ],
            decision=None if analysis.decision is None else DecisionRead.of(analysis.decision),
            covariate=analysis.covariate,
            cap=analysis.cap,
            cap_percentile=analysis.cap_percentile,
        )


class SegmentRead(BaseModel):
    """One segment's analysis; ``p_values_across_segments`` each variant's p-value corrected by
    Benjamini-Hochberg across the segments (None for the control)."""

    value: str
    analysis: AnalysisRead
    p_values_across_segments: list[float | None]


class HeterogeneityRead(BaseModel):
    """Cochran's Q of a variant's difference with the control on a metric across segments."""

    metric: str
    variant: str
    q: float | None
    df: int
    p_value: float | None
    i_squared: float | None
    heterogeneous: bool


class SegmentBreakdownRead(BaseModel):
    dimension: str
    segments: list[SegmentRead]
    heterogeneity: list[HeterogeneityRead]

    @classmethod
    def of(cls, experiment_id: str, found: SegmentBreakdown) -> SegmentBreakdownRead:
        return cls(
            dimension=found.dimension,
            segments=[
                SegmentRead(
                    value=s.value,
                    analysis=AnalysisRead.of(experiment_id, s.analysis),
                    p_values_across_segments=list(s.p_values_across_segments),
                )
                for s in found.segments
            ],
            heterogeneity=[
                HeterogeneityRead.model_validate(h, from_attributes=True)
                for h in found.heterogeneity
            ],
        )


AnalysisRead.model_rebuild()


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
