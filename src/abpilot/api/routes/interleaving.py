"""Interleaving: merged lists per impression, and clicks credited to rankers."""

from __future__ import annotations

from fastapi import APIRouter

from abpilot.api.deps import Service
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.interleaving import ClicksIn, ClicksRead, ImpressionRead, InterleaveIn

router = APIRouter(tags=["interleaving"], responses=ERRORS)


@router.post("/experiments/{experiment_id}/interleave", response_model=ImpressionRead)
def interleave(experiment_id: str, body: InterleaveIn, service: Service) -> ImpressionRead:
    """One merged list of ranker A's and ranker B's items, each item with the team that
    contributed it. The same request (unit, seed, rankings) gives the same list and id."""
    impression = service.interleaving.interleave(
        experiment_id,
        unit_id=body.unit_id,
        ranking_a=body.ranking_a,
        ranking_b=body.ranking_b,
        length=body.length,
        seed=body.seed,
    )
    return ImpressionRead.of(impression)


@router.post("/experiments/{experiment_id}/clicks", response_model=ClicksRead)
def clicks(experiment_id: str, body: ClicksIn, service: Service) -> ClicksRead:
    """Clicks on items of an impression; a repeated click on one item counts once."""
    result = service.interleaving.record_clicks(
        experiment_id, impression_id=body.impression_id, items=body.items
    )
    return ClicksRead(
        impression_id=result.impression_id, credited=result.credited, repeated=result.repeated
    )
