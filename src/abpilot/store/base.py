"""The Store protocol and the plain records that cross it.

Every backend keeps the same rules (DESIGN.md section 4, "Events and counters"):
- counters change only by atomic increments, never read-modify-write;
- an assignment is stored once per (experiment, unit): the first one wins;
- an event carrying an ``event_id`` is applied at most once per experiment;
- ``apply_events`` applies a whole batch or nothing;
- for each (unit, metric) the store keeps the unit's running total t; when it grows by v the
  variant's sum of squares of per-unit totals grows by (t + v)^2 - t^2 = 2tv + v^2;
- counters are kept per allocation period: a unit belongs to the period in force when it was first
  assigned, and everything it does counts there (bandit analysis compares arms within periods);
- a shared document's version grows by one exactly on each put that changes its digest;
  documents belong to no experiment, so ``delete_experiment`` leaves them alone.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from abpilot.domain.experiment import Experiment, ExperimentStatus


class EventKind(enum.StrEnum):
    EXPOSURE = "exposure"
    CONVERSION = "conversion"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A validated event, resolved to its variant, ready to be counted.

    An exposure with a ``unit_id`` also stores the unit's assignment if it has none yet.
    A conversion carries ``metric`` and ``value`` (1.0 for a plain binary conversion).
    ``period`` is the allocation period the event counts in (the unit's, or the current one).
    """

    kind: EventKind
    experiment_id: str
    variant: str
    unit_id: str | None = None
    metric: str | None = None
    value: float = 1.0
    event_id: str | None = None
    period: int = 0


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class AssignResult:
    variant: str
    created: bool
    period: int = 0


class StoredAssignment(NamedTuple):
    variant: str
    period: int


@dataclass(frozen=True, slots=True)
class MetricTotals:
    """Per (variant, metric): conversion events, converting units, and per-unit sums."""

    count: int = 0
    units: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0


@dataclass(frozen=True, slots=True)
class VariantCounters:
    assigned_units: int = 0
    exposures: int = 0
    unique_units: int = 0
    metrics: Mapping[str, MetricTotals] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DailyRow:
    """Aggregated impressions and clicks of one variant on one day (the MAB intake)."""

    day: date
    variant: str
    impressions: int
    clicks: int


@dataclass(frozen=True, slots=True)
class RawMetrics:
    """A daily-intake payload exactly as it was posted (append-only audit)."""

    received_at: datetime
    day: date
    payload: str


@dataclass(frozen=True, slots=True)
class AllocationRecord:
    """One change of weights: period ``n`` starts at ``computed_at``. ``details`` holds the
    inputs (counts per arm), probabilities, windows and fallbacks, as plain JSON."""

    experiment_id: str
    period: int
    computed_at: datetime
    weights: Mapping[str, float]
    method: str
    seed: int | None
    source: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Document:
    """A named text document (a FeatureVisor datafile, say) shared by every worker."""

    namespace: str
    key: str
    content: str
    digest: str  # the caller's content hash (e.g. sha256 hex), compared to detect changes
    updated_at: datetime  # UTC
    version: int  # 1 on first put, +1 on every put that changes the digest


class Lease(Protocol):
    """Leadership for scheduled work, held until released or (for Redis) until it expires."""

    def renew(self) -> bool:
        """Extend the lease; False when it was lost."""

    def release(self) -> None: ...


@runtime_checkable
class Store(Protocol):
    """What the service needs from storage. Implementations must pass tests/store/."""

    def create_experiment(self, experiment: Experiment) -> None:
        """Insert a new experiment; raise ``DuplicateKey`` if its key is taken."""

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def get_experiment_id(self, key: str) -> str | None:
        """The id of the experiment with this key, if any."""

    def list_experiments(self, status: ExperimentStatus | None = None) -> list[Experiment]:
        """All experiments (optionally of one status), oldest first."""

    def update_experiment(self, experiment: Experiment, *, expected_version: int) -> None:
        """Replace the stored definition if its version is still ``expected_version``.

        ``experiment.version`` must be ``expected_version + 1``. Raise
        ``ConcurrentModification`` when someone else changed it first, ``DuplicateKey`` when
        the new key is taken, ``ExperimentNotFound`` when it is gone.
        """

    def delete_experiment(self, experiment_id: str) -> bool:
        """Remove the experiment and everything recorded for it; False if it did not exist."""

    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        """Store the unit's assignment unless it has one; return the stored one (first wins)."""

    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        """Stored variant and period of each of these units that has one."""

    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        """Count a batch atomically: all or nothing, each event id at most once."""

    def get_counters(self, experiment_id: str) -> dict[str, VariantCounters]:
        """Counters per variant key, summed over periods (variants with nothing recorded may be
        absent)."""

    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]:
        """Counters per period, then per variant key."""

    def record_daily_metrics(
        self,
        experiment_id: str,
        day: date,
        rows: Sequence[DailyRow],
        payload: str,
        received_at: datetime,
    ) -> None:
        """Append ``payload`` to the raw log and upsert one row per (variant, day), atomically."""

    def get_daily_metrics(self, experiment_id: str) -> list[DailyRow]:
        """Clean daily rows, by day then variant."""

    def get_raw_metrics(self, experiment_id: str) -> list[RawMetrics]:
        """Every posted payload, oldest first."""

    def add_allocation(self, record: AllocationRecord) -> AllocationRecord:
        """Store a weight change as the next period (1, 2, ...; ``record.period`` is ignored)."""

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        """Every weight change, oldest first."""

    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None: ...

    def put_document(
        self, namespace: str, key: str, content: str, digest: str, updated_at: datetime
    ) -> Document:
        """Insert or replace a document, atomically; return what is stored afterwards.

        When the stored digest equals ``digest`` nothing is written and the stored document
        comes back unchanged (same version and ``updated_at``). Otherwise content, digest and
        ``updated_at`` are replaced and the version becomes the previous one + 1 (1 when new):
        concurrent puts of one key get consecutive versions and the last writer's content wins.
        """

    def get_document(self, namespace: str, key: str) -> Document | None:
        """The stored document, or None."""

    def list_documents(self, namespace: str) -> list[Document]:
        """Every document of ``namespace``, sorted by key (code point order)."""

    def delete_document(self, namespace: str, key: str) -> bool:
        """Remove the document; False if it did not exist."""

    def try_lead(self, name: str, ttl_seconds: float) -> Lease | None:
        """Become the one leader for ``name`` across every process using this store, or None
        when another process leads."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be reached."""

    def close(self) -> None: ...
