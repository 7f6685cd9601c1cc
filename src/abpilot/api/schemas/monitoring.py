"""Bodies of the monitoring endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from abpilot.service.monitoring import Report, report_to_dict

StatusName = Literal["ok", "warning", "alert"]


class CheckRead(BaseModel):
    name: str = Field(examples=["srm"])
    status: StatusName
    message: str = Field(description="a full sentence saying what was found")
    figures: dict[str, Any] = Field(description="the plain values the check judged")
    ran: bool = Field(
        description="false when the check judged nothing (too few units, weights never "
        "recalculated, not running, or the checks failed): its ok then means not checked"
    )


class ExperimentHealthRead(BaseModel):
    id: str
    key: str
    type: str
    status: StatusName = Field(description="the worst status of its checks")
    checks: list[CheckRead]


class MonitoringReportRead(BaseModel):
    generated_at: datetime
    days: int
    status: StatusName = Field(description="the worst status of all experiments")
    counts: dict[str, int] = Field(description="experiments per status")
    experiments: list[ExperimentHealthRead]

    @classmethod
    def of(cls, report: Report) -> MonitoringReportRead:
        return cls.model_validate(report_to_dict(report))


class MonitoringReportList(BaseModel):
    reports: list[MonitoringReportRead] = Field(description="newest first")
