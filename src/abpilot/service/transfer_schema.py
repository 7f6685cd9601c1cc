"""The export file, version 1: a JSON document validated by these models on import.

One file holds experiments, each with everything recorded for it (``abpilot.store.state``) and
its daily snapshots, and the shared documents. ``schema_version`` grows on every incompatible
change (the snapshots, optional, were not one); an importer refuses a version it does not know.
``python -c "from abpilot.service.transfer_schema import ExportFile; import json;
print(json.dumps(ExportFile.model_json_schema(), indent=2))"`` prints the JSON Schema.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FORMAT = "abpilot-export"
SCHEMA_VERSION = 1

Count = Field(ge=0)
# The limits every store keeps (SQL column sizes): checked here, so an edited file cannot fail
# halfway through a restore.
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ContextKey = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Name = Annotated[str, StringConstraints(max_length=32)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricCell(_Strict):
    count: int = Count
    units: int = Count
    sum: float
    sum_squares: float = Field(ge=0)


class CounterCell(_Strict):
    """The counters of one variant in one allocation period."""

    period: int = Count
    variant: Key
    assigned_units: int = Count
    exposures: int = Count
    unique_units: int = Count
    metrics: dict[Key, MetricCell] = {}
    # Derived sums (issue 18) by their reserved cell names (``abpilot.domain.derived``).
    derived: dict[Key, MetricCell] = {}


class DailyEntry(_Strict):
    date: date
    variant_name: Key
    impressions: int = Count
    clicks: int = Count


class RawEntry(_Strict):
    received_at: datetime
    date: date
    payload: str


class AllocationEntry(_Strict):
    period: int = Field(ge=1)
    computed_at: datetime
    weights: dict[Key, float]
    method: Name
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None
    source: Name
    details: dict[str, Any]


class DecisionEntry(_Strict):
    id: Key
    unit_id: UnitId | None
    context_key: ContextKey
    context: dict[str, str]
    arm: Key
    propensity: float = Field(gt=0, le=1)
    policy: Name
    method: Name
    decided_at: datetime
    successes: int = Count
    failures: int = Count
    rating: float | None = Field(default=None, allow_inf_nan=False)  # its rating feedback


class ArmStateEntry(_Strict):
    context_key: ContextKey
    arm: Key
    pulls: int = Count
    successes: int = Count
    failures: int = Count
    updated_at: datetime | None


class SnapshotMetric(_Strict):
    """One variant's cumulative figures on one metric in a daily snapshot."""

    n: int = Count
    conversions: int = Count
    sum: float
    sum_squares: float = Field(ge=0)


class SnapshotVariant(_Strict):
    key: Key
    units: int = Count
    metrics: dict[Key, SnapshotMetric]


class SnapshotEntry(_Strict):
    """One daily snapshot (``abpilot.service.snapshot_documents``): the UTC day, when it was
    taken (on that day), and each variant's cumulative counters at that moment."""

    date: date
    taken_at: datetime
    variants: list[SnapshotVariant]


class ExperimentEntry(_Strict):
    definition: dict[str, Any]  # as ``abpilot.store.codec.experiment_to_dict`` writes it
    assignments: list[tuple[UnitId, Key, Annotated[int, Field(ge=0)]]]  # unit id, variant, period
    exposed_units: list[UnitId]
    unit_totals: list[
        tuple[UnitId, Key, Annotated[int, Field(ge=0)], float]
    ]  # unit id, metric, conversions, total
    # [event id, when it was claimed]; a bare id (files before the dedupe window) is taken as
    # claimed at the import.
    event_ids: list[tuple[UnitId, datetime] | UnitId]
    counters: list[CounterCell]
    last_event_at: datetime | None
    daily_metrics: list[DailyEntry]
    raw_metrics: list[RawEntry]
    allocations: list[AllocationEntry]
    decisions: list[DecisionEntry]
    feedback: list[tuple[Key, Key]]  # decision id, event
    bandit_states: list[ArmStateEntry]
    # Daily snapshots, oldest first; absent from files written before they were exported.
    snapshots: list[SnapshotEntry] = []


class DocumentEntry(_Strict):
    namespace: Key
    key: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    content: str
    digest: Annotated[str, StringConstraints(max_length=128)]
    updated_at: datetime


class ExportFile(_Strict):
    format: Literal["abpilot-export"]
    schema_version: Literal[1]
    exported_at: datetime
    abpilot_version: str
    experiments: list[ExperimentEntry]
    documents: list[DocumentEntry]
