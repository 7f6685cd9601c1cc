"""Cross-origin requests from browsers (CORS) for the origins in ``CORS_ORIGINS``.

A web page on another origin (the FeatureVisor JS SDK fetching ``/datafile/…`` and posting
``/expose``, an OFREP web provider, a front end calling the REST API) may call the service when
its origin is listed (or ``*`` is): preflights are answered, and answers name the origin in
``Access-Control-Allow-Origin`` and expose ``ETag`` and ``X-Request-ID`` to the page's script.
No cookies are involved (keys travel in headers), so credentials are never allowed. With no
origins configured nothing is added and browsers keep refusing cross-origin calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from abpilot.api.errors import error_response

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
REQUEST_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "X-API-Key", "X-Request-ID")
EXPOSED_HEADERS = ("ETag", "X-Request-ID")


class Cors(CORSMiddleware):
    """Starlette's CORS middleware, whose refused preflight answers in the API's error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        origin = request_headers.get("origin", "")
        refusal = error_response(
            response.status_code,
            "cors_refused",
            f"this cross-origin request from {origin[:200]!r} is not allowed (its {refused}); "
            "CORS_ORIGINS lists the origins that may call, with the methods "
            f"{', '.join(METHODS)} and the headers {', '.join(REQUEST_HEADERS)}",
            field=refused.split(",")[0].strip() or None,
        )
        for name, value in response.headers.items():
            if name not in ("content-length", "content-type"):
                refusal.headers[name] = value
        return refusal


def install(app: FastAPI, origins: Sequence[str]) -> None:
    """Answer cross-origin requests from ``origins`` (none: do nothing)."""
    if not origins:
        return
    app.add_middleware(
        Cors,
        allow_origins=list(origins),
        allow_methods=METHODS,
        allow_headers=REQUEST_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
    )
