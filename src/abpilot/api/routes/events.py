"""Assignment and event intake: single events, the SONA conversion shape, and batches."""

from __future__ import annotations

from fastapi import APIRouter

from abpilot.api.deps import Service
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.core import (
    AssignmentRead,
    AssignRequest,
    ConversionIn,
    EventBatch,
    EventResult,
    ExposureIn,
    SonaConversionIn,
)
from abpilot.service.specs import aliased

router = APIRouter(tags=["events"], responses=ERRORS)


@router.post("/experiments/{experiment_id}/assign", response_model=AssignmentRead)
def assign(experiment_id: str, body: AssignRequest, service: Service) -> AssignmentRead:
    """The unit's variant (the same on every call and every worker); the assignment is stored.
    ``user_id`` is an alias of ``unit_id``. With ``"expose": true`` the unit's exposure is
    counted in the same atomic step (what SONA's recommendation endpoint does)."""
    unit = aliased(body.unit_id, body.user_id, "unit_id", "user_id", required=True)
    assignment = service.get_variant_for_user(
        experiment_id,
        unit,
        expose=body.expose,
        event_id=body.event_id,
        covariates=body.covariates,
        dimensions=body.dimensions,
    )
    return AssignmentRead.of(assignment)


@router.post("/experiments/conversions", response_model=EventResult)
def sona_conversion(body: SonaConversionIn, service: Service) -> EventResult:
    """A conversion in the shape SONA clients send (``user_id``, ``metric_name``)."""
    result = service.record_conversion(
        experiment=body.experiment_id,
        unit_id=body.user_id,
        metric=body.metric_name,
        value=body.value,
        event_id=body.event_id,
        timestamp=body.timestamp,
    )
    return EventResult.of(result, received=1)


@router.post("/experiments/{experiment_id}/exposures", response_model=EventResult)
def record_exposure(experiment_id: str, body: ExposureIn, service: Service) -> EventResult:
    result = service.record_exposure(
        experiment=experiment_id,
        unit_id=body.unit_id,
        variant=body.variant,
        event_id=body.event_id,
        timestamp=body.timestamp,
        covariates=body.covariates,
        dimensions=body.dimensions,
    )
    return EventResult.of(result, received=1)


@router.post("/experiments/{experiment_id}/conversions", response_model=EventResult)
@router.post("/experiments/{experiment_id}/convert", response_model=EventResult)
def record_conversion(experiment_id: str, body: ConversionIn, service: Service) -> EventResult:
    """One conversion (``/convert`` is OpenInsight's name for the same route)."""
    result = service.record_conversion(
        experiment=experiment_id,
        unit_id=body.unit_id,
        variant=body.variant,
        metric=body.metric,
        value=body.value,
        event_id=body.event_id,
        timestamp=body.timestamp,
        covariates=body.covariates,
        dimensions=body.dimensions,
    )
    return EventResult.of(result, received=1)


@router.post("/events", response_model=EventResult)
def record_events(body: EventBatch, service: Service) -> EventResult:
    """Many exposures and conversions, for any experiments: all are validated first, then all
    are counted or none (a repeated ``event_id`` is acknowledged as a duplicate). On a Redis
    Cluster a batch spanning experiments is counted all or none per experiment, and the reply
    says so with ``"atomic": "per_experiment"``; sending it again is safe (event ids)."""
    events = [e.to_input() for e in body.events]
    result = service.record_events(events, field_prefix="events")
    return EventResult.of(result, received=len(events))
