"""Bodies of the FeatureVisor companion endpoints (compatible with the FeatureVisor Pilot API)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from abpilot.service.companion_features import FeatureStats


class FeatureEvents(BaseModel):
    """Exposures or conversions of one datafile's features: feature key -> variation value."""

    model_config = ConfigDict(extra="forbid")

    datafile: str = Field(min_length=1, max_length=1000, examples=["production/datafile.json"])
    features: dict[str, str] = Field(
        min_length=1, max_length=1000, examples=[{"checkoutButton": "treatment"}]
    )
    unit_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="count per unit (optional)"
    )
    event_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="a retry with it counts once"
    )


class EventsRecorded(BaseModel):
    received: int
    applied: int
    duplicates: int


class VariationStatsRead(BaseModel):
    value: str
    exposures: int
    conversions: int
    conversion_rate: float | None
    weight: float
    probability_best: float | None


class FeatureStatsRead(BaseModel):
    datafile: str
    feature: str
    experiment_id: str
    experiment_key: str
    burn_in: bool
    period: int
    updated_at: datetime | None
    variations: list[VariationStatsRead]

    @classmethod
    def of(cls, stats: FeatureStats) -> FeatureStatsRead:
        return cls.model_validate(stats, from_attributes=True)


class LoadIssueRead(BaseModel):
    datafile: str
    message: str
    at: datetime


class StatsRead(BaseModel):
    datafiles: list[str]
    features: list[FeatureStatsRead]
    issues: list[LoadIssueRead]


class FeatureRecalculation(BaseModel):
    experiment_key: str
    status: str
    period: int | None
    error: str | None
