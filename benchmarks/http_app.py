"""The app the HTTP benchmark serves: abpilot's own app plus two bare reference endpoints.

``create()`` builds the app exactly as ``abpilot serve`` does (``abpilot.api.app.create_app``
with the settings from the environment) and adds, only here and never in the product, a router
with the reference endpoints. They run through the same middleware (body limit, request metrics),
the same app-wide auth dependency and the same pydantic request and response models as the real
routes, and are plain ``def`` functions like the real ones (so they also pay the thread-pool hop),
but they return a constant instead of calling the service:

* ``POST /bench/bare/experiments/{experiment_id}/assign`` parses ``AssignRequest`` and returns a
  constant ``AssignmentRead``, the reference for ``POST /api/v1/experiments/{id}/assign``;
* ``POST /bench/bare/experiments/{experiment_id}/exposures`` parses ``ExposureIn`` and returns a
  constant ``EventResult``, the reference for ``POST /api/v1/experiments/{id}/exposures``.

The difference between a real route and its bare twin is what abpilot itself costs per request:
the service (definition cache, hashing, validation) and the store's round trips.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from abpilot.api.app import create_app
from abpilot.api.schemas.core import (
    AssignedVariant,
    AssignmentRead,
    AssignRequest,
    EventResult,
    ExposureIn,
)

BARE_PREFIX = "/bench/bare"

_ASSIGNMENT = AssignmentRead(
    experiment_id="00000000-0000-0000-0000-000000000000",
    unit_id="unit",
    in_experiment=True,
    variant=AssignedVariant(key="control", name="control", config={}),
)
_APPLIED = EventResult(received=1, applied=1, duplicates=0)

bare = APIRouter(tags=["benchmark"])


@bare.post("/experiments/{experiment_id}/assign", response_model=AssignmentRead)
def bare_assign(experiment_id: str, body: AssignRequest) -> AssignmentRead:
    return _ASSIGNMENT


@bare.post("/experiments/{experiment_id}/exposures", response_model=EventResult)
def bare_exposure(experiment_id: str, body: ExposureIn) -> EventResult:
    return _APPLIED


def create() -> FastAPI:
    """The uvicorn app factory (``benchmarks.http_app:create``, ``factory=True``)."""
    app = create_app()
    app.include_router(bare, prefix=BARE_PREFIX)
    return app
