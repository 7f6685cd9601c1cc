"""Bodies of the interleaving endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from abpilot.interleaving.analysis import InterleavingAnalysis
from abpilot.service.interleaving import Impression


class InterleaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: str | None = Field(default=None, min_length=1, max_length=256)
    ranking_a: list[str] = Field(max_length=1000, examples=[["d1", "d2", "d3"]])
    ranking_b: list[str] = Field(max_length=1000, examples=[["d2", "d4", "d1"]])
    length: int | None = Field(default=None, ge=1, le=100)
    seed: str | None = Field(
        default=None, max_length=256, description="the same seed (and request) gives the same list"
    )


class TeamItem(BaseModel):
    item: str
    team: str


class ImpressionRead(BaseModel):
    impression_id: str
    experiment_id: str
    method: str
    items: list[TeamItem]

    @classmethod
    def of(cls, impression: Impression) -> ImpressionRead:
        return cls(
            impression_id=impression.impression_id,
            experiment_id=impression.experiment_id,
            method=impression.method.value,
            items=[
                TeamItem(item=i, team=t)
                for i, t in zip(impression.items, impression.teams, strict=True)
            ],
        )


class ClicksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impression_id: str = Field(min_length=1, max_length=100)
    items: list[str] = Field(min_length=1, max_length=100)


class ClicksRead(BaseModel):
    impression_id: str
    credited: int
    repeated: int


class InterleavingAnalysisRead(BaseModel):
    experiment_id: str
    type: str = "interleaving"
    impressions: int
    wins_a: int
    wins_b: int
    ties: int
    preference_a: float | None
    preference_a_ci: tuple[float, float] | None
    p_value: float | None
    delta: float | None
    winner: str | None
    alpha: float

    @classmethod
    def of(cls, experiment_id: str, analysis: InterleavingAnalysis) -> InterleavingAnalysisRead:
        return cls(
            experiment_id=experiment_id,
            impressions=analysis.impressions,
            wins_a=analysis.wins_a,
            wins_b=analysis.wins_b,
            ties=analysis.ties,
            preference_a=analysis.preference_a,
            preference_a_ci=analysis.preference_a_ci,
            p_value=analysis.p_value,
            delta=analysis.delta,
            winner=analysis.winner,
            alpha=analysis.alpha,
        )
