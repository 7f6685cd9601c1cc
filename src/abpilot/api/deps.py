"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from abpilot.service import ExperimentService


# Dependencies that only read app state are ``async def``: FastAPI runs a plain ``def``
# dependency on the thread pool, one hand-off per dependency per request (issue 19).
async def get_service(request: Request) -> ExperimentService:
    service: ExperimentService = request.app.state.service
    return service


Service = Annotated[ExperimentService, Depends(get_service)]
