"""Experiments: create, read, change in draft, delete, move through the lifecycle."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status

from abpilot.api.deps import Service
from abpilot.api.schemas.core import (
    EndRequest,
    ErrorBody,
    ExperimentCreate,
    ExperimentRead,
    ExperimentUpdate,
    MetricsRead,
    StatusUpdate,
)
from abpilot.service import ExperimentChanges

ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "The body could not be read (not UTF-8 JSON)"},
    401: {"model": ErrorBody, "description": "No valid API key (when keys are configured)"},
    403: {"model": ErrorBody, "description": "The key's role may not do this"},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    413: {"model": ErrorBody, "description": "The body is larger than MAX_BODY_BYTES"},
    422: {"model": ErrorBody},
}
router = APIRouter(prefix="/experiments", tags=["experiments"], responses=ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ExperimentRead)
def create_experiment(body: ExperimentCreate, service: Service) -> ExperimentRead:
    experiment = service.create_experiment(
        key=body.key,
        name=body.name,
        description=body.description,
        type=body.type,
        experiment_type=body.experiment_type,
        traffic_allocation=body.traffic_allocation,
        variants=[v.model_dump() for v in body.variants],
        metrics=[m.model_dump() for m in body.metrics],
        salt=body.salt,
        settings=body.settings,
        source=body.source,
        assignment_source=body.assignment_source,
        dimension=body.dimension,
        daily_source=body.daily_source,
        dimensions=body.dimensions,
    )
    return ExperimentRead.of(experiment)


@router.get("", response_model=list[ExperimentRead])
def list_experiments(
    service: Service, status: Literal["draft", "running", "paused", "completed"] | None = None
) -> list[ExperimentRead]:
    return [ExperimentRead.of(e) for e in service.list_experiments(status)]


@router.get("/{experiment_id}", response_model=ExperimentRead)
def get_experiment(experiment_id: str, service: Service) -> ExperimentRead:
    """Look an experiment up by its id or its key."""
    return ExperimentRead.of(service.get_experiment(experiment_id))


@router.patch("/{experiment_id}", response_model=ExperimentRead)
def update_experiment(
    experiment_id: str, body: ExperimentUpdate, service: Service
) -> ExperimentRead:
    """Change a draft. Name and description may also change while running or paused, and
    metrics may be added then (list the current ones first, unchanged, then the new ones)."""
    changes = ExperimentChanges(
        name=body.name,
        description=body.description,
        traffic_allocation=body.traffic_allocation,
        variants=None if body.variants is None else [v.model_dump() for v in body.variants],
        metrics=None if body.metrics is None else [m.model_dump() for m in body.metrics],
        salt=body.salt,
        settings=body.settings,
        dimensions=body.dimensions,
    )
    return ExperimentRead.of(service.update_experiment(experiment_id, changes))


@router.delete("/{experiment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_experiment(experiment_id: str, service: Service) -> Response:
    """Delete an experiment and all it recorded (not while it is running)."""
    service.delete_experiment(experiment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{experiment_id}/status", response_model=ExperimentRead)
def set_status(experiment_id: str, body: StatusUpdate, service: Service) -> ExperimentRead:
    """Move through the lifecycle: draft -> running <-> paused -> completed. Completing without a
    ``winner`` stores the variant the final analysis' decision ships, if any; a ``winner`` the
    decision does not support is a 409 unless ``override`` is true (then recorded)."""
    if body.status == "completed":
        experiment = service.end_experiment(
            experiment_id, winner=body.winner, override=body.override
        )
        return ExperimentRead.of(experiment)
    experiment = service.set_status(
        experiment_id, body.status, winner=body.winner, override=body.override
    )
    return ExperimentRead.of(experiment)


@router.post("/{experiment_id}/end", response_model=ExperimentRead)
def end_experiment(
    experiment_id: str, service: Service, body: EndRequest | None = None
) -> ExperimentRead:
    """Complete the experiment (OpenInsight's route), as ``PUT …/status`` with
    ``{"status": "completed"}`` does: the ``winner`` given (with ``override`` when the final
    analysis' decision does not support it), else the variant the decision ships."""
    body = body or EndRequest()
    experiment = service.end_experiment(experiment_id, winner=body.winner, override=body.override)
    return ExperimentRead.of(experiment)


@router.get("/{experiment_id}/metrics", response_model=MetricsRead)
def get_metrics(experiment_id: str, service: Service) -> MetricsRead:
    """Per variant: exposures, units, and per metric count, units, sum, mean, variance, rate."""
    return MetricsRead.of(service.get_metrics(experiment_id))
