"""Bodies of the OpenFeature Remote Evaluation Protocol (OFREP) endpoints.

OFREP is an external format, so these bodies are camelCase (``errorCode``, ``targetingKey``) as the
protocol's OpenAPI document (open-feature/protocol, ``service/openapi.yaml``) names them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from abpilot.service.flags import FlagEvaluation

FailureCode = Literal["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]
Reason = Literal["SPLIT", "DEFAULT", "STATIC", "DISABLED"]
MetadataValue = bool | int | float | str


class _Ofrep(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# Documents the request in /openapi.json: the routes read the body themselves, so that a bad one
# is refused in OFREP's shape rather than as the API's 422.
class EvaluationRequest(_Ofrep):
    """An OFREP evaluation request."""

    context: dict[str, Any] | None = Field(
        default=None,
        description="the evaluation context: 'targetingKey' is the unit id (required); other "
        "attributes are accepted and ignored",
        examples=[{"targetingKey": "user-123"}],
    )


class EvaluationSuccess(_Ofrep):
    key: str = Field(description="the flag key as requested (an experiment's key or id)")
    reason: Reason = Field(
        description="SPLIT: the unit's variant; DEFAULT: the unit is outside the traffic "
        "allocation and gets the control; STATIC: the completed experiment's winner; DISABLED: "
        "the experiment is not running and has no winner, so the control"
    )
    variant: str = Field(description="the variant's key")
    value: Any = Field(
        default=None,
        description="the variant's config['value'] when its config has that key, else the "
        "variant's key; absent when config['value'] is null (use the code default)",
    )
    metadata: dict[str, MetadataValue] = Field(
        description="experimentId, experimentKey, experimentType, experimentStatus, inExperiment"
    )

    @classmethod
    def of(cls, evaluation: FlagEvaluation) -> EvaluationSuccess:
        experiment = evaluation.experiment
        return cls(
            key=evaluation.flag_key,
            reason=evaluation.reason.value,
            variant=evaluation.variant.key,
            value=evaluation.value,
            metadata={
                "experimentId": experiment.id,
                "experimentKey": experiment.key,
                "experimentType": experiment.type.value,
                "experimentStatus": experiment.status.value,
                "inExperiment": evaluation.in_experiment,
            },
        )


class EvaluationFailure(_Ofrep):
    key: str
    error_code: FailureCode
    error_details: str


class FlagNotFound(_Ofrep):
    key: str
    error_code: Literal["FLAG_NOT_FOUND"]
    error_details: str


class BulkEvaluationSuccess(_Ofrep):
    flags: list[EvaluationSuccess]

    @classmethod
    def of(cls, evaluations: list[FlagEvaluation]) -> BulkEvaluationSuccess:
        return cls(flags=[EvaluationSuccess.of(e) for e in evaluations])


class BulkEvaluationFailure(_Ofrep):
    error_code: FailureCode
    error_details: str
