"""Bodies and answers of the warehouse routes (sources, checks, refreshes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from abpilot.api.schemas.core import Strict
from abpilot.service.warehouse import RefreshState, SourceCheck
from abpilot.warehouse.refresh import Failure, Refresh
from abpilot.warehouse.spec import Source


class SourceIn(Strict):
    """A named query of the warehouse: an ``assignment`` source returns ``unit_id``,
    ``experiment_key``, ``variant`` and ``timestamp`` (and the ``dimensions`` listed); a
    ``fact`` source returns ``unit_id``, ``timestamp`` and value columns (``columns``, checked
    up front when listed)."""

    name: str = Field(max_length=100)
    kind: Literal["assignment", "fact"]
    sql: str = Field(max_length=100_000)
    description: str = ""
    dimensions: list[str] = Field(default_factory=list, max_length=50)
    columns: list[str] = Field(default_factory=list, max_length=200)


class SourceRead(BaseModel):
    name: str
    kind: str
    sql: str
    description: str
    dimensions: list[str]
    columns: list[str]

    @classmethod
    def of(cls, source: Source) -> SourceRead:
        return cls(**source.to_json())


class SourceCheckRead(BaseModel):
    name: str
    kind: str
    ok: bool
    columns: list[str]
    types: dict[str, str]
    problem: str | None
    field: str | None

    @classmethod
    def of(cls, check: SourceCheck) -> SourceCheckRead:
        return cls(
            name=check.source.name,
            kind=check.source.kind.value,
            ok=check.problem is None,
            columns=list(check.columns),
            types=dict(check.types or {}),
            problem=check.problem,
            field=check.field,
        )


class RefreshRead(BaseModel):
    experiment_id: str
    refreshed_at: datetime
    seconds: float
    dialect: str
    row_counts: dict[str, Any]
    sql: str
    parameters: dict[str, Any]
    days: list[str]
    dimension_values: list[str]  # of the first dimension (``segments`` has every dimension's)
    segments: dict[str, list[str]] = Field(default_factory=dict)

    @classmethod
    def of(cls, refresh: Refresh) -> RefreshRead:
        return cls(
            experiment_id=refresh.experiment_id,
            refreshed_at=refresh.refreshed_at,
            seconds=refresh.seconds,
            dialect=refresh.dialect,
            row_counts=refresh.row_counts,
            sql=refresh.sql,
            parameters=dict(refresh.parameters),
            days=refresh.days(),
            dimension_values=refresh.dimension_values(),
            segments=refresh.segment_values(),
        )


class FailureRead(BaseModel):
    failed_at: datetime
    code: str
    message: str
    field: str | None

    @classmethod
    def of(cls, failure: Failure) -> FailureRead:
        return cls(
            failed_at=failure.failed_at,
            code=failure.code,
            message=failure.message,
            field=failure.field,
        )


class RefreshStateRead(BaseModel):
    """The latest refresh (what the analysis reads) and the latest failure since, if any."""

    experiment_id: str
    refresh: RefreshRead | None
    failure: FailureRead | None

    @classmethod
    def of(cls, state: RefreshState) -> RefreshStateRead:
        return cls(
            experiment_id=state.experiment_id,
            refresh=RefreshRead.of(state.refresh) if state.refresh else None,
            failure=FailureRead.of(state.failure) if state.failure else None,
        )
