"""The plain records that cross the store boundary: what a store keeps and gives back.

They are pure data (frozen dataclasses and named tuples) so that the statistics, the bandits and
the service read them without importing storage; ``abpilot.store.base`` re-exports them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from abpilot.domain.inputs import EventKind

if TYPE_CHECKING:
    from abpilot.domain.rules import ExperimentRules


def as_utc(moment: datetime) -> datetime:
    """Stores without time zones give back naive datetimes: they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(slots=True)
class EventRecord:
    """A validated event, resolved to its variant, ready to be counted. Treat it as immutable:
    it is not frozen only because a batch builds a thousand of them and a frozen dataclass
    sets each field through ``object.__setattr__`` (three times the cost).

    An exposure with a ``unit_id`` also stores the unit's assignment if it has none yet. When the
    unit has one, the store counts the event under it (its variant and period) instead of
    ``variant`` and ``period``: another worker may have assigned the unit since this one read.
    A conversion carries ``metric`` and ``value`` (1.0 for a plain binary conversion).
    ``period`` is the allocation period the event counts in (the unit's, or the current one).
    ``received_at`` is when the service accepted it (its clock, UTC): the store keeps the
    latest per experiment (``last_event_at``), so monitoring can tell when traffic stopped.
    An exposure may carry the unit's ``covariates`` and ``dimensions``: the unit's first
    exposure stores them (issue 18). ``rules`` are the experiment's counting rules beyond the
    plain counters (``abpilot.domain.rules.ExperimentRules``; None: none), passed by the
    service from its cached definition with every event of the experiment.
    ``needs_assignment`` (a conversion of a unit whose assignment the service did not read)
    asks the counting step to refuse the batch with ``UnitNotAssigned`` unless the unit has an
    assignment there (stored, or made by an exposure earlier in the batch): the check is then
    made in the same atomic step as the counting.
    """

    kind: EventKind
    experiment_id: str
    variant: str
    unit_id: str | None = None
    metric: str | None = None
    value: float = 1.0
    event_id: str | None = None
    period: int = 0
    received_at: datetime | None = None
    covariates: Mapping[str, float] | None = None
    dimensions: Mapping[str, str] | None = None
    rules: ExperimentRules | None = None
    needs_assignment: bool = False


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a batch did; ``per_experiment`` when the store applied a batch spanning experiments
    atomically per experiment rather than as a whole (Redis Cluster: one slot per experiment)."""

    applied: int
    duplicates: int
    per_experiment: bool = False


@dataclass(frozen=True, slots=True)
class AssignResult:
    """The unit's stored assignment; ``created`` when this call stored it, ``exposed`` when
    ``assign_and_expose`` counted its exposure (False for a repeated event id)."""

    variant: str
    created: bool
    period: int = 0
    exposed: bool = False


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

    @classmethod
    def from_stored(cls, values: Mapping[str, Any]) -> MetricTotals:
        """From stored numbers by field name (missing ones are 0), each as its field's type."""
        numbers: dict[str, Any] = {n: kind(values.get(n, 0)) for n, kind in METRIC_FIELDS.items()}
        return cls(**numbers)


# Every counter of MetricTotals and its type: the stores write and read them by these names (a
# SQL column, a Redis hash field suffix), integers by exact increments, floats as floats.
METRIC_FIELDS: dict[str, type[int] | type[float]] = {
    "count": int,
    "units": int,
    "sum": float,
    "sum_squares": float,
}


@dataclass(frozen=True, slots=True)
class VariantCounters:
    assigned_units: int = 0
    exposures: int = 0
    unique_units: int = 0
    metrics: Mapping[str, MetricTotals] = field(default_factory=dict)
    # The derived sums (covariates, capped totals, ratio cross sums, segments) as reserved
    # cells: read them through ``abpilot.domain.derived``.
    derived: Mapping[str, MetricTotals] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnitMetricTotals:
    """Every unit's total of one metric, as columns (one entry per unit that converted and has a
    stored assignment, in no particular order): its variant and period, conversions and total,
    and its covariate (0 where the unit has none, as in the covariate sums). What a percentile
    cap is computed from at analysis time (issue 18)."""

    units: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    periods: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    covariates: list[float] = field(default_factory=list)

    def add(self, unit: str, a: StoredAssignment, count: int, total: float, x: float) -> None:
        self.units.append(unit)
        self.variants.append(a.variant)
        self.periods.append(a.period)
        self.counts.append(count)
        self.totals.append(total)
        self.covariates.append(x)


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


class FeedbackOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


GLOBAL_CONTEXT = "*"  # the context key whose state pools every context


@dataclass(frozen=True, slots=True)
class Decision:
    """One contextual-bandit decision as logged: which arm, chosen by which policy, with what
    probability."""

    id: str  # decision id (uuid4 hex from the service)
    experiment_id: str
    unit_id: str | None
    context_key: str  # e.g. "time_of_day=evening|user_type=new" (never GLOBAL_CONTEXT)
    context: Mapping[str, str]  # the attributes as sent (stored as JSON)
    arm: str
    propensity: float  # in (0, 1]
    policy: str  # "bandit" or "control"
    method: str  # how the propensity was computed: "exact", "monte_carlo", "fixed"
    decided_at: datetime  # UTC
    successes: int = 0  # feedback applied so far (read back from the store)
    failures: int = 0
    rating: float | None = None  # the value of the rating feedback applied to it, if any


@dataclass(frozen=True, slots=True)
class ArmState:
    """Counts behind the Beta posterior of one arm in one context (GLOBAL_CONTEXT pools all)."""

    context_key: str
    arm: str
    pulls: int  # decisions that chose this arm here
    successes: int  # success feedback applied
    failures: int  # failure feedback applied
    updated_at: datetime | None
