"""One place that turns every failure into ``{"error": {"code", "message", "field"}}``, with the
headers RFC 9110 asks of some statuses: ``WWW-Authenticate`` on a 401, ``Allow`` on a 405."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from abpilot.api.http_semantics import allowed_methods
from abpilot.domain.errors import AbpilotError, StoreUnavailable
from abpilot.domain.text import safe_text
from abpilot.observability import STORE_ERRORS

log = logging.getLogger("abpilot.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
# The challenge of every 401 (RFC 9110 11.6.1): a key or a JWT, sent as a bearer token (or in
# X-API-Key, which no challenge syntax describes).
CHALLENGE = 'Bearer realm="abpilot"'


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The error body; text UTF-8 cannot carry (a lone surrogate echoed from the input) is
    escaped, so no refusal can itself fail to render."""
    body: dict[str, Any] = {
        "code": code,
        "message": safe_text(message),
        "field": None if field is None else safe_text(field),
        **extra,
    }
    response = JSONResponse({"error": body}, status_code=status, headers=headers)
    if status == 401:
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or None


def install(app: FastAPI) -> None:
    @app.exception_handler(AbpilotError)
    async def domain_error(_request: Request, error: AbpilotError) -> JSONResponse:
        if isinstance(error, StoreUnavailable):
            STORE_ERRORS.inc()
        return error_response(error.status_code, error.code, error.message, error.field)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": safe_text(_field(tuple(e.get("loc", ()))) or "") or None,
                "message": safe_text(str(e.get("msg", ""))),
                "type": str(e.get("type", "")),
            }
            for e in error.errors()
        ]
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        where = f"{first['field']}: " if first["field"] else ""
        return error_response(
            422, "validation_error", f"{where}{first['message']}", first["field"], details=problems
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "http_error")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names the methods of one route; a path may have several.
            methods = allowed_methods(request.app.router.routes, request.scope)
            if methods:
                headers["Allow"] = ", ".join(methods)
        return error_response(error.status_code, code, str(error.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "an unexpected error occurred; see the logs")
