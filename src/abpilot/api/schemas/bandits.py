"""Bodies of the bandit endpoints (daily intake, allocation, recalculation, history)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, Field

from abpilot.api.schemas.core import Lenient
from abpilot.domain.records import AllocationRecord, DailyRow
from abpilot.service.allocation import AllocationResult, RecalculationOutcome

Count = Field(ge=0, le=10**15)


class DailyVariantIn(Lenient):
    variant_name: str = Field(
        min_length=1, max_length=100, validation_alias=AliasChoices("variant_name", "variant")
    )
    impressions: int = Field(ge=0, le=10**15)
    clicks: int = Field(ge=0, le=10**15)


class DailyMetricsIn(Lenient):
    """The MAB Optimization API's daily post: one date, impressions and clicks per variant."""

    date: date
    metrics: list[DailyVariantIn] = Field(min_length=1, max_length=1000)


class DailyRowRead(BaseModel):
    date: date
    variant_name: str
    impressions: int
    clicks: int
    ctr: float | None

    @classmethod
    def of(cls, row: DailyRow) -> DailyRowRead:
        ctr = row.clicks / row.impressions if row.impressions else None
        return cls(
            date=row.day,
            variant_name=row.variant,
            impressions=row.impressions,
            clicks=row.clicks,
            ctr=ctr,
        )


class DailyMetricsRead(BaseModel):
    experiment_id: str
    date: date
    stored: list[DailyRowRead]


class ArmMetricsRead(BaseModel):
    impressions: int
    clicks: int
    ctr: float | None


class ArmAllocationRead(BaseModel):
    variant_name: str
    is_control: bool
    allocation_percentage: float
    probability_best: float | None
    metrics: ArmMetricsRead
    window_days: int | None
    fallback: str


class AllocationRead(BaseModel):
    experiment_id: str
    experiment_name: str
    computed_at: datetime
    algorithm: str = "thompson_sampling"
    method: str
    seed: int | None
    source: str
    window_days: int | None
    burn_in: bool
    allocations: list[ArmAllocationRead]

    @classmethod
    def of(cls, result: AllocationResult) -> AllocationRead:
        return cls(
            experiment_id=result.experiment_id,
            experiment_name=result.experiment_name,
            computed_at=result.computed_at,
            method=result.method,
            seed=result.seed,
            source=result.source,
            window_days=result.window_days,
            burn_in=result.burn_in,
            allocations=[
                ArmAllocationRead(
                    variant_name=a.key,
                    is_control=a.is_control,
                    # Basis points to percent: exact to two decimals, sums to 100.
                    allocation_percentage=round(a.weight * 100, 2),
                    probability_best=a.probability_best,
                    metrics=ArmMetricsRead(
                        impressions=a.trials,
                        clicks=a.successes,
                        ctr=a.successes / a.trials if a.trials else None,
                    ),
                    window_days=a.window_days,
                    fallback=a.fallback,
                )
                for a in result.arms
            ],
        )


class RecalculationRead(BaseModel):
    experiment_id: str
    key: str
    status: str
    period: int | None
    error: str | None

    @classmethod
    def of(cls, outcome: RecalculationOutcome) -> RecalculationRead:
        return cls.model_validate(outcome, from_attributes=True)


class WeightChangeRead(BaseModel):
    period: int
    computed_at: datetime
    weights: dict[str, float]
    method: str
    seed: int | None
    source: str
    details: dict[str, Any]

    @classmethod
    def of(cls, record: AllocationRecord) -> WeightChangeRead:
        return cls(
            period=record.period,
            computed_at=record.computed_at,
            weights=dict(record.weights),
            method=record.method,
            seed=record.seed,
            source=record.source,
            details=dict(record.details),
        )


class HistoryRead(BaseModel):
    experiment_id: str
    weight_changes: list[WeightChangeRead]
    daily_metrics: list[DailyRowRead]
