"""The OpenFeature Remote Evaluation Protocol (OFREP) at ``/ofrep/v1``: running experiments
evaluated as feature flags, for OpenFeature SDKs with an OFREP provider.

OFREP defines its own error bodies (``{"key", "errorCode", "errorDetails"}``), so these routes
answer their refusals in that shape rather than the API's ``{"error": ...}``: the body is read
here (a malformed one is a 400 ``PARSE_ERROR`` or ``INVALID_CONTEXT``, never the API's 422) and
the service's errors are translated here. Authentication (401, 403) and an unreachable store
(503) keep the API's shape: OFREP leaves those bodies open.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from abpilot.api.deps import Service
from abpilot.api.http_semantics import none_match
from abpilot.api.schemas.core import ErrorBody
from abpilot.api.schemas.ofrep import (
    BulkEvaluationFailure,
    BulkEvaluationSuccess,
    EvaluationFailure,
    EvaluationRequest,
    EvaluationSuccess,
    FlagNotFound,
)
from abpilot.domain.errors import ExperimentNotFound, ValidationError
from abpilot.service.flags import NotAFlag, evaluate_flag, evaluate_flags


class OfrepFailure(Exception):
    """A refusal in OFREP's shape: with the flag ``key`` for one flag, without it for bulk."""

    def __init__(self, status: int, code: str, details: str, key: str | None = None) -> None:
        super().__init__(details)
        self.status = status
        self.body = {"errorCode": code, "errorDetails": details}
        if key is not None:
            self.body = {"key": key, **self.body}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


class OfrepRoute(APIRoute):
    """Answers an ``OfrepFailure`` raised anywhere in the route, its body's parsing included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except OfrepFailure as failure:
                return failure.response()

        return handle


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
}
REQUEST_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": EvaluationRequest.model_json_schema()}},
    }
}
router = APIRouter(prefix="/ofrep/v1", tags=["openfeature"], route_class=OfrepRoute)


async def targeting_key(request: Request) -> str:
    """The unit id: the body's ``context.targetingKey``. Other context attributes are ignored."""
    key = request.path_params.get("key")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as error:
        raise OfrepFailure(
            400, "PARSE_ERROR", f"the request body is not valid JSON ({error})", key
        ) from None
    context = body.get("context") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(context, dict | None):
        raise OfrepFailure(
            400,
            "INVALID_CONTEXT",
            'the request body must be a JSON object {"context": {"targetingKey": ...}}',
            key,
        )
    unit_id = (context or {}).get("targetingKey")
    if unit_id is None or unit_id == "":
        raise OfrepFailure(
            400,
            "TARGETING_KEY_MISSING",
            "context.targetingKey is required: the id of the unit (user, session, …) the flag "
            "is evaluated for",
            key,
        )
    if not isinstance(unit_id, str):
        raise OfrepFailure(
            400,
            "INVALID_CONTEXT",
            f"context.targetingKey must be a string (got {type(unit_id).__name__})",
            key,
        )
    return unit_id


TargetingKey = Annotated[str, Depends(targeting_key)]


def _invalid_unit(error: ValidationError, key: str | None = None) -> OfrepFailure:
    detail = error.message.replace("unit_id", "context.targetingKey", 1)
    return OfrepFailure(400, "INVALID_CONTEXT", detail, key)


@router.post(
    "/evaluate/flags/{key}",
    summary="OFREP single flag evaluation",
    responses={
        200: {"model": EvaluationSuccess, "description": "The flag's value for the unit"},
        400: {"model": EvaluationFailure, "description": "Bad evaluation request"},
        404: {"model": FlagNotFound, "description": "Flag not found"},
        **AUTH_ERRORS,
    },
    openapi_extra=REQUEST_BODY,
)
def evaluate_one(key: str, unit_id: TargetingKey, service: Service) -> JSONResponse:
    """One experiment (by key or id) as a flag for the unit ``context.targetingKey``. A running
    experiment records the unit's assignment, as ``POST /api/v1/experiments/{id}/assign`` does."""
    try:
        evaluation = evaluate_flag(service, flag_key=key, unit_id=unit_id)
    except ExperimentNotFound as error:
        raise OfrepFailure(404, "FLAG_NOT_FOUND", error.message, key) from None
    except ValidationError as error:
        raise _invalid_unit(error, key) from None
    except NotAFlag as error:
        raise OfrepFailure(400, "GENERAL", error.message, key) from None
    return JSONResponse(EvaluationSuccess.of(evaluation).body())


@router.post(
    "/evaluate/flags",
    summary="OFREP bulk flag evaluation",
    responses={
        200: {
            "model": BulkEvaluationSuccess,
            "description": "Every running experiment as a flag for the unit",
            "headers": {"ETag": {"description": "send it back in If-None-Match for a 304"}},
        },
        304: {"description": "The evaluation is the one tagged by If-None-Match"},
        400: {"model": BulkEvaluationFailure, "description": "Bad evaluation request"},
        **AUTH_ERRORS,
    },
    openapi_extra=REQUEST_BODY,
)
def evaluate_all(
    unit_id: TargetingKey,
    service: Service,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Every running ab_test and bandit experiment as a flag for the unit ``context.targetingKey``
    (each assignment recorded), FeatureVisor companion features left out. The ETag is a digest
    of the answer, so a 304 means "the same flags, variants and values"."""
    try:
        evaluations = evaluate_flags(service, unit_id=unit_id)
    except ValidationError as error:
        raise _invalid_unit(error) from None
    body = json.dumps(
        BulkEvaluationSuccess.of(evaluations).body(), ensure_ascii=False, separators=(",", ":")
    ).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})
