"""Bandits: daily intake, current allocation, recalculation, history."""

from __future__ import annotations

from fastapi import APIRouter

from abpilot.api.deps import Service
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.bandits import (
    AllocationRead,
    DailyMetricsIn,
    DailyMetricsRead,
    DailyRowRead,
    HistoryRead,
    RecalculationRead,
    WeightChangeRead,
)
from abpilot.service.allocation import DailyInput

router = APIRouter(tags=["bandits"], responses=ERRORS)


@router.post("/experiments/{experiment_id}/metrics", response_model=DailyMetricsRead)
def record_daily_metrics(
    experiment_id: str, body: DailyMetricsIn, service: Service
) -> DailyMetricsRead:
    """A day's aggregated impressions and clicks per variant (from an ad server or a CDP). The
    payload is kept as sent; a later post for the same date replaces that date's rows."""
    rows = service.record_daily_metrics(
        experiment_id,
        day=body.date,
        metrics=[DailyInput(m.variant_name, m.impressions, m.clicks) for m in body.metrics],
        payload=body.model_dump(mode="json"),
    )
    experiment = service.get_experiment(experiment_id)
    return DailyMetricsRead(
        experiment_id=experiment.id, date=body.date, stored=[DailyRowRead.of(r) for r in rows]
    )


@router.get("/experiments/{experiment_id}/allocation", response_model=AllocationRead)
def get_allocation(experiment_id: str, service: Service) -> AllocationRead:
    """Thompson-sampling weights from the data now: each arm's probability of being best (after
    the floor), with the window and fallback each arm used. Nothing is stored."""
    return AllocationRead.of(service.get_allocation(experiment_id))


@router.post("/experiments/{experiment_id}/recalculate", response_model=RecalculationRead)
def recalculate(experiment_id: str, service: Service) -> RecalculationRead:
    """Recompute the weights now and put them in force (a new period) if they changed."""
    return RecalculationRead.of(service.recalculate(experiment_id))


@router.post("/recalculate", response_model=list[RecalculationRead])
def recalculate_all(service: Service) -> list[RecalculationRead]:
    """Recalculate every running bandit; a failure is reported per experiment."""
    return [RecalculationRead.of(o) for o in service.recalculate_all()]


@router.get("/experiments/{experiment_id}/history", response_model=HistoryRead)
def history(experiment_id: str, service: Service) -> HistoryRead:
    """Every weight change with its inputs, method, seed and window, and the daily metrics."""
    changes, daily = service.get_history(experiment_id)
    return HistoryRead(
        experiment_id=service.get_experiment(experiment_id).id,
        weight_changes=[WeightChangeRead.of(c) for c in changes],
        daily_metrics=[DailyRowRead.of(r) for r in daily],
    )
