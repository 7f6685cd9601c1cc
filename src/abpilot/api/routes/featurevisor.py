"""The FeatureVisor companion at the root, compatible with the FeatureVisor Pilot API: datafiles
with learned weights, exposures, conversions, stats and recalculation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from abpilot.api.http_semantics import none_match
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.featurevisor import (
    EventsRecorded,
    FeatureEvents,
    FeatureRecalculation,
    FeatureStatsRead,
    LoadIssueRead,
    StatsRead,
)
from abpilot.service.companion import Companion, DatafileNotFound

router = APIRouter(tags=["featurevisor"], responses=ERRORS)
CACHE_CONTROL = "public, max-age=30"


async def get_companion(request: Request) -> Companion:
    companion: Companion = request.app.state.companion
    return companion


CompanionDep = Annotated[Companion, Depends(get_companion)]


def _safe(path: str) -> str:
    """A datafile key as listed by the registry; anything that could name another place is not
    one (the lookup is by key in the store, never on disk, so this only gives a clearer 404)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\0" in path or ".." in parts:
        raise DatafileNotFound(f"no datafile '{path[:200]}' is served", field="path")
    return path


@router.get(
    "/datafile/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "the datafile"}},
)
def datafile(path: str, request: Request, companion: CompanionDep) -> Response:
    """The datafile with learned weights written into its allocation ranges. Send the ETag back
    in ``If-None-Match`` to get a 304 while it is unchanged."""
    served = companion.datafile(_safe(path))
    headers = {"ETag": served.etag, "Cache-Control": CACHE_CONTROL}
    if none_match(request.headers.get("if-none-match"), served.etag):
        return Response(status_code=304, headers=headers)
    return Response(served.body, media_type="application/json", headers=headers)


@router.post("/expose", response_model=EventsRecorded)
def expose(body: FeatureEvents, companion: CompanionDep) -> EventsRecorded:
    """Count one exposure per named feature and variation (all or none)."""
    result = companion.expose(
        datafile=body.datafile,
        features=body.features,
        unit_id=body.unit_id,
        event_id=body.event_id,
    )
    return EventsRecorded(
        received=len(body.features), applied=result.applied, duplicates=result.duplicates
    )


@router.post("/convert", response_model=EventsRecorded)
def convert(body: FeatureEvents, companion: CompanionDep) -> EventsRecorded:
    """Count one conversion per named feature and variation (all or none)."""
    result = companion.convert(
        datafile=body.datafile,
        features=body.features,
        unit_id=body.unit_id,
        event_id=body.event_id,
    )
    return EventsRecorded(
        received=len(body.features), applied=result.applied, duplicates=result.duplicates
    )


@router.get("/stats", response_model=StatsRead)
def stats(
    companion: CompanionDep,
    datafile: Annotated[str | None, Query(max_length=1000)] = None,
    feature: Annotated[str | None, Query(max_length=1000)] = None,
) -> StatsRead:
    """Per feature and variation: exposures, conversions, rate, weight in force, probability of
    being best, last update; and datafiles that failed to load."""
    return StatsRead(
        datafiles=companion.paths(),
        features=[FeatureStatsRead.of(s) for s in companion.stats(datafile, feature)],
        issues=[
            LoadIssueRead(datafile=i.path, message=i.message, at=i.at) for i in companion.issues
        ],
    )


@router.post("/recalculate", response_model=list[FeatureRecalculation])
def recalculate(companion: CompanionDep) -> list[FeatureRecalculation]:
    """Recalculate every feature's weights now (the scheduler does it every
    UPDATE_INTERVAL_MINUTES); features in burn-in keep their weights."""
    return [
        FeatureRecalculation(experiment_key=o.key, status=o.status, period=o.period, error=o.error)
        for o in companion.recalculate()
    ]
