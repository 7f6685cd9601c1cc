"""Monitoring: the health of every running experiment now, and the reports the daily run kept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.monitoring import MonitoringReportList, MonitoringReportRead
from abpilot.service.monitoring import DEFAULT_DAYS, MAX_DAYS, Monitor

router = APIRouter(prefix="/monitoring", tags=["monitoring"], responses=ERRORS)


async def get_monitor(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


MonitorDep = Annotated[Monitor, Depends(get_monitor)]


@router.get("/report", response_model=MonitoringReportRead)
def report(
    monitor: MonitorDep,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="the period figures cover")] = (
        DEFAULT_DAYS
    ),
) -> MonitoringReportRead:
    """Every running experiment checked now: sample ratio mismatch, arm dominance (bandits),
    minimum rate, staleness, conversions above exposures and guardrails. An experiment's status
    is the worst of its checks (ok, warning, alert)."""
    return MonitoringReportRead.of(monitor.report(days=days))


@router.get("/reports", response_model=MonitoringReportList)
def reports(monitor: MonitorDep) -> MonitoringReportList:
    """The reports the daily run kept (the last MONITOR_KEEP), newest first."""
    return MonitoringReportList(
        reports=[MonitoringReportRead.of(r) for r in monitor.kept_reports()]
    )
