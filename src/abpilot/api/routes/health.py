"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from abpilot.api.deps import Service

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(service: Service) -> dict[str, str]:
    """The store answers; 503 with the reason when it does not."""
    service.ready()
    return {"status": "ready"}
