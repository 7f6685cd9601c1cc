"""Warehouse-native analysis: sources (admin), their check, and refreshes of an experiment
(admin). Thin: parse, call ``service.warehouse``, shape the answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from abpilot.api.deps import Service
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.warehouse import (
    RefreshRead,
    RefreshStateRead,
    SourceCheckRead,
    SourceIn,
    SourceRead,
)

router = APIRouter(tags=["warehouse"], responses=ERRORS)


@router.post("/warehouse/sources", status_code=status.HTTP_201_CREATED, response_model=SourceRead)
def put_source(body: SourceIn, service: Service) -> SourceRead:
    """Create or replace a source; its query runs first with no row in the warehouse, and a
    missing column or a failing query is a 422 naming it (nothing is stored)."""
    return SourceRead.of(service.warehouse.put_source(body.model_dump()))


@router.get("/warehouse/sources", response_model=list[SourceRead])
def list_sources(
    service: Service, kind: Literal["assignment", "fact", "daily"] | None = None
) -> list[SourceRead]:
    """Every source (of one kind), by name."""
    found = service.warehouse.list_sources()
    return [SourceRead.of(s) for s in found if kind is None or s.kind.value == kind]


@router.get("/warehouse/sources/{key}", response_model=SourceRead)
def get_source(key: str, service: Service) -> SourceRead:
    """One source by its name."""
    return SourceRead.of(service.warehouse.get_source(key))


@router.delete("/warehouse/sources/{key}", status_code=status.HTTP_204_NO_CONTENT)
def delete_source(key: str, service: Service) -> Response:
    service.warehouse.delete_source(key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/warehouse/check", response_model=list[SourceCheckRead])
def check_sources(
    service: Service,
    source: Annotated[str | None, Query(max_length=100, description="One source")] = None,
) -> list[SourceCheckRead]:
    """Every source (or one) against the warehouse: columns present, types of a sample usable."""
    return [SourceCheckRead.of(c) for c in service.warehouse.check(source)]


@router.post(
    "/experiments/{experiment_id}/refresh",
    response_model=RefreshRead | RefreshStateRead,
    responses={202: {"model": RefreshStateRead, "description": "Started (wait=false)"}},
)
def refresh(
    experiment_id: str,
    service: Service,
    response: Response,
    wait: Annotated[
        bool, Query(description="Answer when it is done (default), or at once with 202.")
    ] = True,
) -> RefreshRead | RefreshStateRead:
    """Run the experiment's query plan in the warehouse (at most WAREHOUSE_TIMEOUT_SECONDS)
    and store its aggregates as the latest refresh, which the analysis reads. A failure keeps
    the previous refresh and is recorded (GET shows it). With ``wait=false`` the refresh runs
    in the background and the answer (202) is the state before it."""
    if not wait:
        started = service.warehouse.start_refresh(experiment_id)
        response.status_code = status.HTTP_202_ACCEPTED
        return RefreshStateRead.of(service.warehouse.state(started))
    return RefreshRead.of(service.warehouse.refresh(experiment_id))


@router.get("/experiments/{experiment_id}/refresh", response_model=RefreshStateRead)
def refresh_state(experiment_id: str, service: Service) -> RefreshStateRead:
    return RefreshStateRead.of(service.warehouse.state(experiment_id))
