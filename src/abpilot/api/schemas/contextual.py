"""Bodies of the contextual-bandit endpoints: decide, feedback, stats, performance, off-policy."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from abpilot.contextual.offpolicy import Estimate
from abpilot.service.contextual import (
    ArmStats,
    ContextualStats,
    DayStats,
    DecisionResult,
    OffPolicyResult,
    RateStats,
)


class DecideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: str | None = Field(default=None, min_length=1, max_length=256)
    context: dict[str, Any] = Field(
        default_factory=dict, max_length=100, examples=[{"time_of_day": "evening"}]
    )


class DecisionRead(BaseModel):
    decision_id: str
    experiment_id: str
    arm: str
    config: dict[str, Any]
    propensity: float
    policy: str
    method: str
    context_key: str
    backed_off: bool

    @classmethod
    def of(cls, result: DecisionResult) -> DecisionRead:
        return cls(
            decision_id=result.decision_id,
            experiment_id=result.experiment_id,
            arm=result.arm.key,
            config=dict(result.arm.config),
            propensity=result.propensity,
            policy=result.policy,
            method=result.method,
            context_key=result.context_key,
            backed_off=result.backed_off,
        )


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="the decision (or give unit_id)"
    )
    unit_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="instead of decision_id: the unit's latest decision within decision_ttl_hours",
    )
    event: str = Field(
        min_length=1,
        max_length=100,
        examples=["click", "rating", "thumbs_up"],
        description="hyphens match underscores: thumbs-up is thumbs_up",
    )
    value: float | None = Field(default=None, description="the rating, for rating events")


class FeedbackRead(BaseModel):
    decision_id: str
    event: str
    outcome: str
    applied: bool


class RateRead(BaseModel):
    decisions: int
    successes: int
    success_rate: float | None
    ci: tuple[float, float] | None

    @classmethod
    def of(cls, rate: RateStats) -> RateRead:
        return cls(
            decisions=rate.decisions,
            successes=rate.successes,
            success_rate=rate.success_rate,
            ci=rate.ci,
        )


class ArmStatsRead(BaseModel):
    arm: str
    selection_rate: float | None
    performance: RateRead
    alpha: float
    beta: float

    @classmethod
    def of(cls, arm: ArmStats) -> ArmStatsRead:
        return cls(
            arm=arm.arm,
            selection_rate=arm.selection_rate,
            performance=RateRead.of(arm.performance),
            alpha=arm.alpha,
            beta=arm.beta,
        )


class ContextStatsRead(BaseModel):
    context_key: str
    performance: RateRead
    best_arm: str
    arms: list[ArmStatsRead]


class PolicyComparisonRead(BaseModel):
    bandit: RateRead
    control: RateRead | None
    difference: float | None
    difference_ci: tuple[float, float] | None
    p_value: float | None
    method: str | None


class ContextualStatsRead(BaseModel):
    experiment_id: str
    overall: RateRead
    arms: list[ArmStatsRead]
    contexts: list[ContextStatsRead]
    bandit_vs_control: PolicyComparisonRead

    @classmethod
    def of(cls, stats: ContextualStats) -> ContextualStatsRead:
        comparison = stats.policies.comparison
        return cls(
            experiment_id=stats.experiment_id,
            overall=RateRead.of(stats.overall),
            arms=[ArmStatsRead.of(a) for a in stats.arms],
            contexts=[
                ContextStatsRead(
                    context_key=c.context_key,
                    performance=RateRead.of(c.performance),
                    best_arm=c.best_arm,
                    arms=[ArmStatsRead.of(a) for a in c.arms],
                )
                for c in stats.contexts
            ],
            bandit_vs_control=PolicyComparisonRead(
                bandit=RateRead.of(stats.policies.bandit),
                control=RateRead.of(stats.policies.control) if stats.policies.control else None,
                difference=comparison.difference if comparison else None,
                difference_ci=comparison.difference_ci if comparison else None,
                p_value=comparison.p_value if comparison else None,
                method=comparison.method if comparison else None,
            ),
        )


class DayRead(BaseModel):
    date: date
    overall: RateRead
    bandit: RateRead
    control: RateRead

    @classmethod
    def of(cls, day: DayStats) -> DayRead:
        return cls(
            date=day.day,
            overall=RateRead.of(day.overall),
            bandit=RateRead.of(day.bandit),
            control=RateRead.of(day.control),
        )


class PerformanceRead(BaseModel):
    experiment_id: str
    days: list[DayRead]


class EstimateRead(BaseModel):
    value: float
    standard_error: float
    ci: tuple[float, float]

    @classmethod
    def of(cls, estimate: Estimate) -> EstimateRead:
        return cls(value=estimate.value, standard_error=estimate.standard_error, ci=estimate.ci)


class OffPolicyRead(BaseModel):
    experiment_id: str
    policy: str
    decisions: int
    effective_sample_size: float
    ips: EstimateRead
    snips: EstimateRead
    doubly_robust: EstimateRead
    logged: EstimateRead

    @classmethod
    def of(cls, result: OffPolicyResult) -> OffPolicyRead:
        e = result.estimates
        return cls(
            experiment_id=result.experiment_id,
            policy=result.policy,
            decisions=e.n,
            effective_sample_size=e.effective_sample_size,
            ips=EstimateRead.of(e.ips),
            snips=EstimateRead.of(e.snips),
            doubly_robust=EstimateRead.of(e.dr),
            logged=EstimateRead.of(e.logged),
        )
