"""The Store protocol, in roles, and the plain records that cross it (their home is
``abpilot.domain.records``; they are re-exported here).

``Store`` is the union of seven role protocols, one per kind of thing stored
(docs/architecture.md §1): ``ExperimentStore`` (definitions), ``EventStore`` (assignments, event
intake, counters), ``HistoryStore`` (daily intake, allocation periods), ``DecisionStore``
(contextual decisions and feedback), ``DocumentStore`` (shared documents), ``LeaderStore``
(leases) and ``TransferStore`` (what export and import move), plus ``ping`` and ``close``. Code
that needs one role asks for that role, and a test double implements only it. The methods that
follow from others (a batch read from the single read, ``get_counters`` from the periods) are
written once in ``abpilot.store.defaults``; a backend overrides one only with a faster path.

Every backend keeps the same rules (docs/architecture.md §6):
- counters change only by atomic increments, never read-modify-write;
- an assignment is stored once per (experiment, unit): the first one wins;
- every event of a unit counts under the unit's assignment (variant and period), read in the same
  atomic step, whatever variant the event names; a unit without one gets its first exposure of
  the batch as its assignment (a conversion of a unit never assigned counts as it names);
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

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Protocol, runtime_checkable

from abpilot.domain.errors import ConcurrentModification, DuplicateKey, ValidationError
from abpilot.domain.experiment import Experiment, ExperimentStatus
from abpilot.domain.inputs import EventKind as EventKind  # re-exported: its old home
from abpilot.domain.records import (
    GLOBAL_CONTEXT as GLOBAL_CONTEXT,
)
from abpilot.domain.records import (
    AllocationRecord as AllocationRecord,
)
from abpilot.domain.records import (
    ApplyResult as ApplyResult,
)
from abpilot.domain.records import (
    ArmState as ArmState,
)
from abpilot.domain.records import (
    AssignResult as AssignResult,
)
from abpilot.domain.records import (
    DailyRow as DailyRow,
)
from abpilot.domain.records import (
    Decision as Decision,
)
from abpilot.domain.records import (
    Document as Document,
)
from abpilot.domain.records import (  # re-exported: the records' old home
    EventRecord as EventRecord,
)
from abpilot.domain.records import (
    FeedbackOutcome as FeedbackOutcome,
)
from abpilot.domain.records import (
    MetricTotals as MetricTotals,
)
from abpilot.domain.records import (
    RawMetrics as RawMetrics,
)
from abpilot.domain.records import (
    StoredAssignment as StoredAssignment,
)
from abpilot.domain.records import (
    UnitMetricTotals as UnitMetricTotals,
)
from abpilot.domain.records import (
    VariantCounters as VariantCounters,
)
from abpilot.store.state import ExperimentState, UnitState


def check_context_key(decision: Decision) -> None:
    """Refuse a decision filed under ``GLOBAL_CONTEXT``: that state is the pool of all the
    others, and counting a decision there directly would count it twice."""
    if decision.context_key == GLOBAL_CONTEXT:
        raise ValidationError(
            f"a decision's context key cannot be '{GLOBAL_CONTEXT}' (it names the pooled state)",
            field="context_key",
        )


def experiment_taken(field: str, value: str | None = None) -> DuplicateKey:
    """What every store raises when a new or renamed experiment's ``field`` ("id" or "key") is
    taken, whether its own check or the database's unique constraint caught it."""
    if value is None:
        return DuplicateKey(f"an experiment with this {field} already exists", field=field)
    quoted = f"'{value}'" if field == "key" else value
    return DuplicateKey(f"an experiment with {field} {quoted} already exists", field=field)


def period_taken(experiment_id: str, expected: int, latest: int) -> ConcurrentModification:
    """What every store raises when an allocation's compare-and-set finds another period."""
    return ConcurrentModification(
        f"experiment {experiment_id} is at allocation period {latest}, not {expected}: another "
        "process stored new weights first; reload and retry",
        field="period",
    )


@runtime_checkable
class ExperimentStore(Protocol):
    """Experiment definitions: created once per id and key, changed under a version check
    (compare-and-set), deleted with everything recorded for them. Every service reads it."""

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


@runtime_checkable
class EventStore(Protocol):
    """Assignments and event intake, and the counters they build (the counting rules above):
    what assignment, ``record_events`` and analysis use. ``get_counters`` and
    ``get_counters_many`` have defaults in ``abpilot.store.defaults``."""

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

    def apply_current_events(
        self, events: Sequence[EventRecord], versions: Mapping[str, int]
    ) -> ApplyResult:
        """``apply_events``, only while each experiment of ``versions`` has that version of its
        definition stored (the one its events were resolved against, maybe from a cache):
        otherwise raise ``DefinitionChanged`` naming one that changed (or is gone) and count
        nothing. A backend checks inside its atomic step where it can (Redis: the script;
        memory: the lock); the default reads each definition just before counting."""

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

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        """Each unit's total of ``metric`` with its variant, period and (when named) the
        covariate its first exposure stored: every unit that converted and has an assignment,
        exactly (the percentile caps of issue 18 are computed from it)."""
        ...

    # The dedupe window in days (0: every event id is kept forever): an id is recognised as a
    # duplicate for at least this long after it was claimed (``abpilot.store.event_ids``).
    event_id_retention_days: int

    def prune_event_ids(self, *, now: datetime, limit: int) -> int:
        """Forget up to ``limit`` event ids claimed before the window that ends at ``now``, in
        one short step (intake goes on between calls); how many were removed (0: none left).
        Redis removes whole day sets, so it may remove more than ``limit``."""


@runtime_checkable
class HistoryStore(Protocol):
    """Daily intake (each posted payload, and one clean row per variant and day) and the
    allocation history (the periods of a bandit's weights, stored by compare-and-set): what
    the allocator and monitoring use. ``get_daily_metrics_many`` and ``latest_allocations``
    have defaults in ``abpilot.store.defaults``."""

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

    def add_allocation(
        self, record: AllocationRecord, *, expected_period: int | None = None
    ) -> AllocationRecord:
        """Store a weight change as the next period (1, 2, ...; ``record.period`` is ignored).

        With ``expected_period`` it is a compare-and-set: the record becomes period
        ``expected_period + 1`` only if the experiment's latest period is still
        ``expected_period`` (0: none yet), checked and written in one atomic step. Otherwise
        nothing is stored and ``ConcurrentModification`` is raised: another process (two workers
        recalculating at once) stored a period since the caller read it.
        """

    def add_allocations(
        self,
        records: Sequence[AllocationRecord],
        *,
        expected_periods: Mapping[str, int] | None = None,
    ) -> list[AllocationRecord]:
        """``add_allocation`` of each record, in one atomic step: each becomes the next period of
        its experiment (several records of one experiment take consecutive periods in the given
        order), concurrent additions never share a period, and on an error nothing is stored.
        Returns the stored records in the given order.

        ``expected_periods`` (experiment id -> the latest period the caller read, 0 for none)
        makes it a compare-and-set as in ``add_allocation``: when any listed experiment's latest
        period is another one, nothing is stored and ``ConcurrentModification`` is raised."""

    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        """Every weight change, oldest first."""

    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None: ...

    def latest_allocations(self, experiment_ids: Iterable[str]) -> dict[str, AllocationRecord]:
        """``latest_allocation`` of many experiments at once; one without any is absent."""


@runtime_checkable
class DecisionStore(Protocol):
    """Contextual-bandit decisions, the feedback on them and the (context, arm) states they
    count on: what the contextual and interleaving services use."""

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
        rating: float | None = None,
    ) -> bool:
        """Apply one feedback event to a decision, atomically and at most once.

        When (experiment, decision, event) was recorded before, nothing changes and the answer
        is False. Otherwise it is recorded and, for a SUCCESS (FAILURE) outcome, 1 is added to
        the decision's successes (failures) and to those of its (context, arm) and
        (``GLOBAL_CONTEXT``, arm) states, whose ``updated_at`` becomes ``at``; a NEUTRAL outcome
        is recorded (so the event counts once) but increments nothing. A ``rating`` given
        becomes the decision's ``rating`` in the same step (whatever the outcome). Answers True.
        Raises ``NotFound`` and changes nothing when the decision does not exist.
        """

    def get_bandit_states(self, experiment_id: str) -> list[ArmState]:
        """Every (context, arm) state of the experiment, ``GLOBAL_CONTEXT`` included, sorted by
        (context key, arm) in code point order."""

    def list_decisions(self, experiment_id: str, since: datetime | None = None) -> list[Decision]:
        """Decisions with ``decided_at >= since`` (all when None), oldest first, ties by id."""

    def latest_unit_decision(self, experiment_id: str, unit_id: str) -> Decision | None:
        """The unit's decision with the latest ``decided_at`` (of equal times, the greatest id
        in code point order), with its counts, or None. Found by an index on the unit (SQL:
        (experiment_id, unit_id, decided_at); Redis: a hash of each unit's latest decision id;
        memory: a dict), never by reading the experiment's other decisions."""

    def list_feedback(self, experiment_id: str) -> list[tuple[str, str]]:
        """Every (decision id, event) feedback recorded, sorted."""


@runtime_checkable
class DocumentStore(Protocol):
    """Shared documents by namespace and key (the FeatureVisor companion's datafiles, the
    monitor's reports), versioned by digest. They belong to no experiment: ``delete_experiment``
    leaves them alone."""

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


class Lease(Protocol):
    """Leadership for scheduled work, held until released or (for Redis) until it expires."""

    def renew(self) -> bool:
        """Extend the lease; False when it was lost."""

    def release(self) -> None: ...


@runtime_checkable
class LeaderStore(Protocol):
    """Leadership for scheduled work across every process sharing the store: what the
    ``Scheduler`` uses."""

    def try_lead(self, name: str, ttl_seconds: float) -> Lease | None:
        """Become the one leader for ``name`` across every process using this store, or None
        when another process leads."""


@runtime_checkable
class TransferStore(Protocol):
    """What export and import move beyond the public reads of the other roles: the per-unit
    bookkeeping of an experiment out, a whole experiment (``ExperimentState``) in."""

    def get_unit_state(self, experiment_id: str) -> UnitState:
        """Every unit's assignment, the exposed units, each unit's running total per metric and
        the event ids counted (empty for an unknown experiment)."""

    def restore_experiment(self, state: ExperimentState) -> None:
        """Insert an experiment with everything recorded for it, in one atomic step, so that
        every read (and every later event) behaves as in the store it was read from. Raise
        ``DuplicateKey`` and write nothing when its id or key is taken."""


@runtime_checkable
class Store(
    ExperimentStore,
    EventStore,
    HistoryStore,
    DecisionStore,
    DocumentStore,
    LeaderStore,
    TransferStore,
    Protocol,
):
    """Every role, and the store's own life: what a backend implements (by subclassing
    ``abpilot.store.defaults.StoreDefaults``) and must prove in tests/store/. A caller that
    needs one role asks for that role."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be reached."""

    def close(self) -> None: ...
