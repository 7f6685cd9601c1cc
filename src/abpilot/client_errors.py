"""Errors of ``abpilot.Client``, and the mapping from an error response to a typed error.

An ``{"error": {"code", "message", "field"}}`` body becomes the domain error of that code (with
the server's message and field); 401 and 403 become ``ClientAuthError``; 502/503/504 without an
abpilot error body ``ServiceUnavailable``; any other status ``ClientError``.
"""

from __future__ import annotations

import httpx

from abpilot.domain.errors import (
    AbpilotError,
    ConcurrentModification,
    Conflict,
    DuplicateKey,
    ExperimentNotFound,
    InvalidTransition,
    NotFound,
    StoreUnavailable,
    UnitNotAssigned,
    ValidationError,
    WrongStatus,
)

RETRY_STATUSES = frozenset({502, 503, 504})


class ClientError(AbpilotError):
    """The server answered with a status the client has no typed error for."""

    code = "client_error"

    def __init__(
        self, message: str, *, status_code: int, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.status_code = status_code
        self.code = code or self.code


class ClientAuthError(AbpilotError):
    """The API key is missing or not valid (401), or its role may not do this (403)."""

    code = "unauthorized"

    def __init__(
        self, message: str, *, status_code: int, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.status_code = status_code
        self.code = code or self.code


class ServiceUnavailable(StoreUnavailable):
    """The server could not be reached or answered 502/503/504 (after retries); ``__cause__``
    holds the last connection error, if there was one. A subclass of ``StoreUnavailable``, so one
    ``except`` covers "try again later" whether the store or the service is down."""

    code = "service_unavailable"

    def __init__(self, message: str, *, status_code: int = 503) -> None:
        super().__init__(message)
        self.status_code = status_code


_BY_CODE: dict[str, type[AbpilotError]] = {
    c.code: c
    for c in (
        ValidationError,
        NotFound,
        ExperimentNotFound,
        UnitNotAssigned,
        Conflict,
        DuplicateKey,
        InvalidTransition,
        WrongStatus,
        ConcurrentModification,
        StoreUnavailable,
    )
}
_BY_STATUS: dict[int, type[AbpilotError]] = {
    422: ValidationError,
    404: NotFound,
    409: Conflict,
}


def error_from(response: httpx.Response) -> AbpilotError:
    """The typed error for a failed response (by the body's ``code``, else by status)."""
    status = response.status_code
    try:
        detail = response.json()["error"]
        code, message, field = str(detail["code"]), str(detail["message"]), detail.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = None, f"HTTP {status}: {response.text[:200]}", None
    if status in (401, 403):
        return ClientAuthError(message, status_code=status, code=code, field=field)
    known = _BY_CODE.get(code or "")
    if known is not None and known.status_code == status:
        return known(message, field=field)
    if status in RETRY_STATUSES:
        return ServiceUnavailable(message, status_code=status)
    fallback = _BY_STATUS.get(status)
    if fallback is None:
        return ClientError(message, status_code=status, code=code, field=field)
    error = fallback(message, field=field)
    error.code = code or error.code  # keep the server's own code (e.g. datafile_not_found)
    return error
