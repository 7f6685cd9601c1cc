"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from abpilot.service import ExperimentService


def get_service(request: Request) -> ExperimentService:
    service: ExperimentService = request.app.state.service
    return service


Service = Annotated[ExperimentService, Depends(get_service)]
