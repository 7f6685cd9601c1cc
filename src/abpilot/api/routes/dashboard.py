"""The web dashboard at ``/dashboard``: one HTML page, its script and styles, and Chart.js.

The files are public (``abpilot.api.auth`` lists them). The page reads the REST API from the
browser with the key the user pastes, so it shows nothing that key may not read. No build step and
no CDN: everything it loads is under ``abpilot/dashboard``.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from abpilot.api.auth import Authenticator, Role, _api_key, _bearer
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.snapshots import SessionRead, SnapshotsRead
from abpilot.service.snapshots import Snapshots
from abpilot.version import __version__

DASHBOARD_PATH = "/dashboard"
STATIC_PATH = f"{DASHBOARD_PATH}/static"

# The page loads only its own files and talks only to this service. No inline script or style.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'self'; object-src 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """Static files that the browser revalidates (ETag) on every load, so an upgraded service
    never runs with last version's script."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


router = APIRouter(include_in_schema=False)


@router.get(DASHBOARD_PATH, response_class=HTMLResponse)
@router.get(f"{DASHBOARD_PATH}/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    """The single page; its routes live in the URL fragment (``#/experiments/{key}``)."""
    template = (files("abpilot.dashboard") / "page.html").read_text(encoding="utf-8")
    # Relative URLs in the page resolve against <base>, so the dashboard works behind a proxy
    # that mounts the service under a prefix (ASGI root_path).
    base = f"{request.scope.get('root_path', '')}{DASHBOARD_PATH}/"
    page = template.replace("{{base}}", escape(base, quote=True)).replace(
        "{{version}}", escape(__version__, quote=True)
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)


router.mount(
    STATIC_PATH,
    DashboardFiles(packages=[("abpilot.dashboard", "static")]),
    name="dashboard-static",
)


ROLE_NAMES: dict[Role | None, Literal["read", "write", "admin"]] = {
    Role.READ: "read",
    Role.WRITE: "write",
    Role.ADMIN: "admin",
}

# What the page reads beyond the REST API every client uses, under /api/v1 (read role).
api_router = APIRouter(tags=["dashboard"], responses=ERRORS)


@api_router.get("/session", response_model=SessionRead)
def session(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key),
) -> SessionRead:
    """The role of the key sent (a key that is not valid is a 401), so that a page shows only
    the actions the key may take."""
    authenticator: Authenticator = request.app.state.auth
    if not authenticator.enabled:
        return SessionRead(role="admin", keys_required=False)
    credential = bearer.credentials if bearer is not None else api_key
    role = authenticator.role_of(credential) if credential else None
    # The app-wide check already refused a missing or invalid key: a role is found here.
    return SessionRead(role=ROLE_NAMES.get(role, "read"), keys_required=True)


@api_router.get("/experiments/{experiment_id}/snapshots", response_model=SnapshotsRead)
def snapshots(experiment_id: str, request: Request) -> SnapshotsRead:
    """The experiment's daily snapshots, oldest first: per variant its cumulative units (and
    the units new that day) and, per metric, the cumulative figures with the lift over the
    control and its interval at that day. The scheduler's leader takes one per running A/B test
    or bandit per UTC day."""
    taker: Snapshots = request.app.state.snapshots
    experiment, found = taker.read(experiment_id)
    return SnapshotsRead.of(experiment, found, taker.alpha)
