"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response

from abpilot.api.deps import Service
from abpilot.observability import metrics_body

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics() -> Response:
    """Prometheus metrics: requests by route and status, latency, events ingested and refused,
    recalculations and their duration, store errors."""
    body, content_type = metrics_body()
    return Response(body, media_type=content_type)


@router.get("/readyz")
def readyz(service: Service) -> dict[str, str]:
    """The store answers; 503 with the reason when it does not."""
    service.ready()
    return {"status": "ready"}
