"""A refresh as stored: when it ran, how long, the SQL and parameters that produced it, its row
counts and the aggregate rows (``plan.Row``); and a failed refresh's reason. JSON documents in
the store's ``DocumentStore`` (namespaces below), one per experiment: a successful refresh
replaces the previous one, a failure is kept beside it and never replaces it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from abpilot.domain import derived
from abpilot.domain.records import VariantCounters
from abpilot.warehouse.plan import EXPOSURES, Row, counters_of

REFRESHES = "warehouse.refresh"  # key: experiment id; the latest successful refresh
FAILURES = "warehouse.refresh_failure"  # key: experiment id; the latest failure
SOURCES = "warehouse.sources"  # key: source name


@dataclass(frozen=True, slots=True)
class Refresh:
    experiment_id: str
    refreshed_at: datetime
    seconds: float
    sql: str
    parameters: Mapping[str, Any]
    rows: tuple[Row, ...]
    dialect: str = ""
    daily_rows: int = 0  # (day, variant) rows a daily source gave
    daily_days: tuple[str, ...] = ()  # the days whose totals changed, recorded by this refresh
    dimensions: tuple[str, ...] = ()  # the columns whose values the rows carry, in order

    @property
    def row_counts(self) -> dict[str, Any]:
        """Result rows, exposed units, exposures, and per metric the fact rows joined."""
        facts: dict[str, int] = {}
        for row in self.rows:
            if row.metric != EXPOSURES and not derived.is_reserved(row.metric):
                facts[row.metric] = facts.get(row.metric, 0) + row.count
        exposure_rows = [r for r in self.rows if r.metric == EXPOSURES]
        found: dict[str, Any] = {
            "result_rows": len(self.rows),
            "units": sum(r.units for r in exposure_rows),
            "exposures": sum(r.exposures for r in exposure_rows),
            "fact_rows": facts,
        }
        if self.daily_rows:
            found["daily_rows"] = self.daily_rows
            found["daily_days_recorded"] = len(self.daily_days)
        return found

    def counters(
        self, *, day: str | None = None, dimension: str | None = None
    ) -> dict[str, VariantCounters]:
        return counters_of(self.rows, day=day, dimension=dimension)

    def days(self) -> list[str]:
        return sorted({r.day for r in self.rows if r.day})

    def dimension_values(self) -> list[str]:
        return sorted({r.dimension for r in self.rows if r.dimension})

    def segment_values(self) -> dict[str, list[str]]:
        """Each dimension's values (a legacy refresh's one unnamed dimension is not listed)."""
        return {
            name: sorted({r.values[k] for r in self.rows if len(r.values) > k and r.values[k]})
            for k, name in enumerate(self.dimensions)
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "experiment_id": self.experiment_id,
                "refreshed_at": self.refreshed_at.isoformat(),
                "seconds": self.seconds,
                "sql": self.sql,
                "parameters": dict(self.parameters),
                "dialect": self.dialect,
                "rows": [r.to_json() for r in self.rows],
                "daily_rows": self.daily_rows,
                "daily_days": list(self.daily_days),
                "dimensions": list(self.dimensions),
            },
            sort_keys=True,
            default=str,
        )

    @classmethod
    def from_json(cls, text: str) -> Refresh:
        data = json.loads(text)
        return cls(
            experiment_id=data["experiment_id"],
            refreshed_at=datetime.fromisoformat(data["refreshed_at"]),
            seconds=float(data["seconds"]),
            sql=data["sql"],
            parameters=data.get("parameters", {}),
            rows=tuple(Row.read(r) for r in data["rows"]),
            dialect=data.get("dialect", ""),
            daily_rows=int(data.get("daily_rows", 0)),
            daily_days=tuple(data.get("daily_days", ())),
            dimensions=tuple(data.get("dimensions", ())),
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the latest refresh failed (the previous successful one is kept)."""

    experiment_id: str
    failed_at: datetime
    code: str
    message: str
    field: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "experiment_id": self.experiment_id,
                "failed_at": self.failed_at.isoformat(),
                "code": self.code,
                "message": self.message,
                "field": self.field,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Failure:
        data = json.loads(text)
        return cls(
            data["experiment_id"],
            datetime.fromisoformat(data["failed_at"]),
            data["code"],
            data["message"],
            data.get("field"),
        )


class _Documents(Protocol):
    def get_document(self, namespace: str, key: str) -> Any: ...


def latest_refresh(documents: _Documents, experiment_id: str) -> Refresh | None:
    """The experiment's latest successful refresh kept in ``documents`` (a store)."""
    found = documents.get_document(REFRESHES, experiment_id)
    return Refresh.from_json(found.content) if found is not None else None


def latest_failure(documents: _Documents, experiment_id: str) -> Failure | None:
    """Why the experiment's latest refresh failed (None when it succeeded)."""
    found = documents.get_document(FAILURES, experiment_id)
    return Failure.from_json(found.content) if found is not None else None
