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
  documents belong to no experiment, so ``delete_experiment`` leaves them alone;
- ``last_event_at`` is the latest ``received_at`` of the events counted for an experiment:
  repeated event ids and events without a time leave it alone, and an older time never moves it
  back (an atomic maximum, like the counters);
- a contextual-bandit decision is stored once; recording it adds a pull to its (context, arm)
  and to (``GLOBAL_CONTEXT``, arm) in the same step; feedback is applied at most once per
  (decision, event), and a success or failure counts on the decision and on both states.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from abpilot.domain.errors import ValidationError
from abpilot.domain.experiment import Experiment, ExperimentStatus

if TYPE_CHECKING:
    from abpilot.store.state import ExperimentState, UnitState


class EventKind(enum.StrEnum):
    EXPOSURE = "exposure"
    CONVERSION = "conversion"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A validated event, resolved to its variant, ready to be counted.

    An exposure with a ``unit_id`` also stores the unit's assignment if it has none yet.
    A conversion carries ``metric`` and ``value`` (1.0 for a plain binary conversion).
    ``period`` is the allocation period the event counts in (the unit's, or the current one).
    ``received_at`` is when the service accepted it (its clock, UTC): the store keeps the
    latest per experiment (``last_event_at``), so monitoring can tell when traffic stopped.
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


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    duplicates: int


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


@dataclass(frozen=True, slots=True)
class ArmState:
    """Counts behind the Beta posterior of one arm in one context (GLOBAL_CONTEXT pools all)."""

    context_key: str
    arm: str
    pulls: int  # decisions that chose this arm here
    successes: int  # success feedback applied
    failures: int  # failure feedback applied
    updated_at: datetime | None


def check_context_key(decision: Decision) -> None:
    """Refuse a decision filed under ``GLOBAL_CONTEXT``: that state is the pool of all the
    others, and counting a decision there directly would count it twice."""
    if decision.context_key == GLOBAL_CONTEXT:
        raise ValidationError(
            f"a decision's context key cannot be '{GLOBAL_CONTEXT}' (it names the pooled state)",
            field="context_key",
        )


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

    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        """Assign and expose a unit in one atomic step (one round trip): store the assignment
        (``event.variant``, ``event.period``) unless ``event.unit_id`` has one, and count the
        exposure ``event`` as ``apply_events`` would, under the assignment the unit has then.
        An ``event_id`` already counted counts nothing (``exposed`` False) but the assignment is
        still returned. ``event`` is an exposure with a unit id."""

    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        """Stored variant and period of each of these units that has one."""

    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        """Count a batch atomically: all or nothing, each event id at most once."""

    def get_counters(self, experiment_id: str) -> dict[str, VariantCounters]:
        """Counters per variant key, summed over periods (variants with nothing recorded may be
        absent)."""

    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        """``get_counters`` of many experiments at once, each read as consistently as
        ``get_counters`` reads one. An experiment with no counters (or unknown) is absent, so
        ``.get(id, {})`` gives what ``get_counters(id)`` gives."""

    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]:
        """Counters per period, then per variant key."""

    def last_event_at(self, experiment_id: str) -> datetime | None:
        """The latest ``received_at`` among the events counted for the experiment (UTC), or
        None when none carried one."""

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

    def get_daily_metrics_many(self, experiment_ids: Iterable[str]) -> dict[str, list[DailyRow]]:
        """``get_daily_metrics`` of many experiments at once; one without rows (or unknown) is
        absent."""

    def get_raw_metrics(self, experiment_id: str) -> list[RawMetrics]:
        """Every posted payload, oldest first."""

    def add_allocation(self, record: AllocationRecord) -> AllocationRecord:
        """Store a weight change as the next period (1, 2, ...; ``record.period`` is ignored)."""

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        """Every weight change, oldest first."""

    def add_allocations(self, records: Sequence[AllocationRecord]) -> list[AllocationRecord]:
        """``add_allocation`` of each record, in one atomic step: each becomes the next period of
        its experiment (several records of one experiment take consecutive periods in the given
        order), concurrent additions never share a period, and on an error nothing is stored.
        Returns the stored records in the given order."""

    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None: ...

    def latest_allocations(self, experiment_ids: Iterable[str]) -> dict[str, AllocationRecord]:
        """``latest_allocation`` of many experiments at once; one without any is absent."""

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

    def record_decision(self, decision: Decision) -> None:
        """Insert the decision (its ``successes`` and ``failures`` are ignored: stored as 0) and,
        in the same atomic step, add 1 to ``pulls`` of (experiment, context key, arm) and of
        (experiment, ``GLOBAL_CONTEXT``, arm), setting their ``updated_at`` to ``decided_at``.

        A decision id already stored for the experiment raises ``DuplicateKey`` and changes
        nothing; a context key equal to ``GLOBAL_CONTEXT`` raises ``ValidationError``.
        """

    def get_decision(self, experiment_id: str, decision_id: str) -> Decision | None:
        """The stored decision with the feedback counted on it so far, or None."""

    def apply_feedback(
        self,
        experiment_id: str,
        decision_id: str,
        event: str,
        outcome: FeedbackOutcome,
        at: datetime,
    ) -> bool:
        """Apply one feedback event to a decision, atomically and at most once.

        When (experiment, decision, event) was recorded before, nothing changes and the answer
        is False. Otherwise it is recorded and, for a SUCCESS (FAILURE) outcome, 1 is added to
        the decision's successes (failures) and to those of its (context, arm) and
        (``GLOBAL_CONTEXT``, arm) states, whose ``updated_at`` becomes ``at``; a NEUTRAL outcome
        is recorded (so the event counts once) but increments nothing. Answers True.
        Raises ``NotFound`` and changes nothing when the decision does not exist.
        """

    def get_bandit_states(self, experiment_id: str) -> list[ArmState]:
        """Every (context, arm) state of the experiment, ``GLOBAL_CONTEXT`` included, sorted by
        (context key, arm) in code point order."""

    def list_decisions(self, experiment_id: str, since: datetime | None = None) -> list[Decision]:
        """Decisions with ``decided_at >= since`` (all when None), oldest first, ties by id."""

    def list_feedback(self, experiment_id: str) -> list[tuple[str, str]]:
        """Every (decision id, event) feedback recorded, sorted."""

    def get_unit_state(self, experiment_id: str) -> UnitState:
        """Every unit's assignment, the exposed units, each unit's running total per metric and
        the event ids counted (empty for an unknown experiment)."""

    def restore_experiment(self, state: ExperimentState) -> None:
        """Insert an experiment with everything recorded for it, in one atomic step, so that
        every read (and every later event) behaves as in the store it was read from. Raise
        ``DuplicateKey`` and write nothing when its id or key is taken."""

    def try_lead(self, name: str, ttl_seconds: float) -> Lease | None:
        """Become the one leader for ``name`` across every process using this store, or None
        when another process leads."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be reached."""

    def close(self) -> None: ...
