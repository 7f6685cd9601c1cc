"""Export and import: move experiments, with everything recorded for them, between stores.

``export`` reads each experiment's whole state (``abpilot.store.state``) into the versioned JSON
document of ``transfer_schema``; ``import_`` validates such a document completely (shape, then
every experiment definition, then every reference to a variant, metric or period) before it
writes anything, refuses experiments whose id or key is taken (or skips them, if asked), and
restores each experiment in one atomic step of the target store, then its daily snapshots
(``snapshot_documents``), then the shared documents. Every read answers afterwards as it did in
the source store, and later events count as they would have there: units keep
their variants, a repeated event id is still a duplicate, sums of squares grow from each unit's
running total.

Export reads one experiment at a time; for an exact snapshot, export while no traffic arrives
(pause the experiments or stop the service first).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from abpilot.bandits.config import BanditOptions
from abpilot.domain.errors import DuplicateKey, ValidationError
from abpilot.domain.experiment import Experiment
from abpilot.service import companion, monitoring
from abpilot.service.lookup import ExperimentLookup
from abpilot.service.snapshot_documents import encode, namespace
from abpilot.service.specs import COMPLETION, build_experiment
from abpilot.service.transfer_checks import check_documents, check_references, check_unique, parse
from abpilot.service.transfer_schema import (
    FORMAT,
    SCHEMA_VERSION,
    AllocationEntry,
    ArmStateEntry,
    CounterCell,
    DailyEntry,
    DecisionEntry,
    DocumentEntry,
    ExperimentEntry,
    ExportFile,
    MetricCell,
    RawEntry,
    SnapshotEntry,
)
from abpilot.store.base import (
    AllocationRecord,
    ArmState,
    DailyRow,
    Decision,
    MetricTotals,
    RawMetrics,
    StoredAssignment,
    VariantCounters,
)
from abpilot.store.codec import as_utc, experiment_from_dict, experiment_to_dict
from abpilot.store.event_ids import window_start
from abpilot.store.state import ExperimentState, UnitState
from abpilot.version import __version__

log = logging.getLogger("abpilot.transfer")

# The namespaces of shared documents an export carries (each experiment's daily snapshots go
# with the experiment).
DOCUMENT_NAMESPACES = (companion.NAMESPACE, monitoring.NAMESPACE)


@dataclass(frozen=True, slots=True)
class ImportResult:
    imported: list[str]  # experiment keys, in file order
    skipped: list[str]  # keys already present (with ``skip_existing``)
    documents: int


class TransferService:
    """``service.transfer.export()`` and ``service.transfer.import_(document)``."""

    def __init__(self, lookup: ExperimentLookup, *, bandit_defaults: BanditOptions) -> None:
        self.lookup = lookup
        self.store = lookup.store
        self.bandit_defaults = bandit_defaults

    def export(self, experiments: Sequence[str] | None = None) -> dict[str, Any]:
        """The export document (JSON-able) of the named experiments (ids or keys), or of all."""
        store = self.store
        if experiments is None:
            chosen = store.list_experiments()
        else:
            chosen = [self.lookup.get(e) for e in dict.fromkeys(experiments)]
        document = ExportFile(
            format=FORMAT,
            schema_version=SCHEMA_VERSION,
            exported_at=self.lookup.clock(),
            abpilot_version=__version__,
            experiments=[_entry(self.dump(e), self._snapshots(e)) for e in chosen],
            documents=[
                DocumentEntry.model_validate(d, from_attributes=True)
                for namespace in DOCUMENT_NAMESPACES
                for d in store.list_documents(namespace)
            ],
        )
        return document.model_dump(mode="json")

    def dump(self, experiment: Experiment) -> ExperimentState:
        """Everything the store holds for ``experiment``."""
        store, exp = self.store, experiment.id
        units = store.get_unit_state(exp)
        start = window_start(self.lookup.clock(), store.event_id_retention_days)
        if start is not None:  # only the ids inside the dedupe window
            kept = {i: at for i, at in units.event_ids.items() if at >= start}
            units = dataclasses.replace(units, event_ids=kept)
        return ExperimentState(
            experiment=experiment,
            units=units,
            counters=store.get_period_counters(exp),
            last_event_at=store.last_event_at(exp),
            daily=store.get_daily_metrics(exp),
            raw=store.get_raw_metrics(exp),
            allocations=store.list_allocations(exp),
            decisions=store.list_decisions(exp),
            feedback=store.list_feedback(exp),
            arm_states=store.get_bandit_states(exp),
        )

    def _snapshots(self, experiment: Experiment) -> list[SnapshotEntry]:
        """The experiment's daily snapshots, oldest first; one the store cannot read back (no
        read shows it either) is left out with a warning."""
        found = []
        for d in self.store.list_documents(namespace(experiment.id)):
            try:
                found.append(SnapshotEntry.model_validate(json.loads(d.content)))
            except ValueError:  # not JSON, or not a snapshot (pydantic's errors are ValueErrors)
                log.warning("snapshot %s of %s is unreadable; not exported", d.key, experiment.key)
        return found

    def import_(self, document: Mapping[str, Any], *, skip_existing: bool = False) -> ImportResult:
        """Validate the whole document, then restore its experiments and documents.

        Raises ``ValidationError`` (naming the offending field) and writes nothing when the
        document is malformed; raises ``DuplicateKey`` and writes nothing when an experiment's
        id or key is taken, unless ``skip_existing``, which leaves those experiments as they are.
        """
        parsed = parse(document)
        states = [self._state(entry, n) for n, entry in enumerate(parsed.experiments)]
        check_unique(states)
        check_documents(parsed)
        snapshots = {
            s.experiment.id: e.snapshots for s, e in zip(states, parsed.experiments, strict=True)
        }
        store = self.store
        fresh, skipped = [], []
        for state in states:
            if self._taken(state.experiment) is None:
                fresh.append(state)
            elif skip_existing:
                skipped.append(state.experiment.key)
            else:
                raise DuplicateKey(
                    f"experiment '{state.experiment.key}' ({self._taken(state.experiment)}) "
                    "already exists in this store; nothing was imported (skip existing "
                    "experiments, --skip-existing, to import the others)",
                    field="experiments",
                )
        for state in fresh:
            store.restore_experiment(state)
            self._restore_snapshots(state.experiment.id, snapshots[state.experiment.id])
        for d in parsed.documents:
            store.put_document(d.namespace, d.key, d.content, d.digest, d.updated_at)
        return ImportResult(
            imported=[s.experiment.key for s in fresh],
            skipped=skipped,
            documents=len(parsed.documents),
        )

    def _restore_snapshots(self, experiment_id: str, snapshots: Sequence[SnapshotEntry]) -> None:
        """Write the snapshots of a restored experiment, as ``Snapshots.take`` wrote them, after
        removing any its id left behind in this store. (Documents live outside the experiment,
        on a Redis Cluster on another shard, so this is a step after its atomic restore.)"""
        store, where = self.store, namespace(experiment_id)
        for stale in store.list_documents(where):
            store.delete_document(where, stale.key)
        for s in snapshots:
            variants = [v.model_dump() for v in s.variants]
            content, digest = encode(day=s.date, taken_at=s.taken_at, variants=variants)
            store.put_document(where, s.date.isoformat(), content, digest, as_utc(s.taken_at))

    def _taken(self, experiment: Experiment) -> str | None:
        """Which of the experiment's id and key the store already has, if any."""
        store = self.store
        if store.get_experiment(experiment.id) is not None:
            return f"id {experiment.id}"
        if store.get_experiment_id(experiment.key) is not None:
            return f"key '{experiment.key}'"
        return None

    def _state(self, entry: ExperimentEntry, n: int) -> ExperimentState:
        where = f"experiments[{n}]"
        experiment = self._definition(entry.definition, f"{where}.definition")
        now = self.lookup.clock()  # the claim time of ids exported without one
        state = ExperimentState(
            experiment=experiment,
            units=UnitState(
                assignments={u: StoredAssignment(v, p) for u, v, p in entry.assignments},
                exposed=frozenset(entry.exposed_units),
                totals={(u, m): (c, t) for u, m, c, t in entry.unit_totals},
                event_ids=dict(
                    (claimed, now) if isinstance(claimed, str) else (claimed[0], as_utc(claimed[1]))
                    for claimed in entry.event_ids
                ),
            ),
            counters=_counters(entry.counters),
            last_event_at=None if entry.last_event_at is None else as_utc(entry.last_event_at),
            daily=[
                DailyRow(r.date, r.variant_name, r.impressions, r.clicks)
                for r in entry.daily_metrics
            ],
            raw=[RawMetrics(as_utc(r.received_at), r.date, r.payload) for r in entry.raw_metrics],
            allocations=[_allocation(experiment.id, a) for a in entry.allocations],
            decisions=[_decision(experiment.id, d) for d in entry.decisions],
            feedback=[(d, e) for d, e in entry.feedback],
            arm_states=[
                ArmState(
                    context_key=a.context_key,
                    arm=a.arm,
                    pulls=a.pulls,
                    successes=a.successes,
                    failures=a.failures,
                    updated_at=None if a.updated_at is None else as_utc(a.updated_at),
                )
                for a in entry.bandit_states
            ],
        )
        check_references(entry, state, where)
        return state

    def _definition(self, raw: dict[str, Any], where: str) -> Experiment:
        """The stored definition, checked by the same rules as a new experiment."""
        try:
            experiment = experiment_from_dict(raw)
            if str(uuid.UUID(experiment.id)) != experiment.id:
                raise ValueError(f"id {experiment.id!r:.60} is not a canonical UUID")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValidationError(
                f"{where} is not an experiment definition (ids are UUIDs): {error!s:.200}",
                field=where,
            ) from None
        try:
            build_experiment(
                bandit_defaults=self.bandit_defaults,
                id=experiment.id,
                key=experiment.key,
                name=experiment.name,
                type=experiment.type,
                description=experiment.description,
                traffic_allocation=experiment.traffic_allocation,
                variants=experiment.variants,
                metrics=experiment.metrics,
                salt=experiment.salt,
                # A completion's record is abpilot's own, refused only from users.
                settings={k: v for k, v in experiment.settings.items() if k != COMPLETION},
                now=experiment.created_at,
                dimensions=experiment.dimensions,
            )
        except ValidationError as error:
            field = f"{where}.{error.field}" if error.field else where
            raise ValidationError(f"{field}: {error.message}", field=field) from None
        return experiment


def _counters(cells: Sequence[CounterCell]) -> dict[int, dict[str, VariantCounters]]:
    found: dict[int, dict[str, VariantCounters]] = {}
    for c in cells:
        found.setdefault(c.period, {})[c.variant] = VariantCounters(
            assigned_units=c.assigned_units,
            exposures=c.exposures,
            unique_units=c.unique_units,
            metrics={
                m: MetricTotals(count=t.count, units=t.units, sum=t.sum, sum_squares=t.sum_squares)
                for m, t in c.metrics.items()
            },
            derived={
                m: MetricTotals(count=t.count, units=t.units, sum=t.sum, sum_squares=t.sum_squares)
                for m, t in c.derived.items()
            },
        )
    return found


def _allocation(experiment_id: str, a: AllocationEntry) -> AllocationRecord:
    return AllocationRecord(
        experiment_id=experiment_id,
        period=a.period,
        computed_at=as_utc(a.computed_at),
        weights=a.weights,
        method=a.method,
        seed=a.seed,
        source=a.source,
        details=a.details,
    )


def _decision(experiment_id: str, d: DecisionEntry) -> Decision:
    return Decision(
        id=d.id,
        experiment_id=experiment_id,
        unit_id=d.unit_id,
        context_key=d.context_key,
        context=d.context,
        arm=d.arm,
        propensity=d.propensity,
        policy=d.policy,
        method=d.method,
        decided_at=as_utc(d.decided_at),
        successes=d.successes,
        failures=d.failures,
        rating=d.rating,
    )


def _entry(state: ExperimentState, snapshots: list[SnapshotEntry]) -> ExperimentEntry:
    units = state.units
    return ExperimentEntry(
        definition=experiment_to_dict(state.experiment),
        assignments=[(u, a.variant, a.period) for u, a in sorted(units.assignments.items())],
        exposed_units=sorted(units.exposed),
        unit_totals=[(u, m, c, t) for (u, m), (c, t) in sorted(units.totals.items())],
        event_ids=[(i, at) for i, at in sorted(units.event_ids.items())],
        counters=[
            CounterCell(
                period=period,
                variant=variant,
                assigned_units=c.assigned_units,
                exposures=c.exposures,
                unique_units=c.unique_units,
                metrics={
                    m: MetricCell(
                        count=t.count, units=t.units, sum=t.sum, sum_squares=t.sum_squares
                    )
                    for m, t in sorted(c.metrics.items())
                },
                derived={
                    m: MetricCell(
                        count=t.count, units=t.units, sum=t.sum, sum_squares=t.sum_squares
                    )
                    for m, t in sorted(c.derived.items())
                },
            )
            for period, by_variant in sorted(state.counters.items())
            for variant, c in sorted(by_variant.items())
        ],
        last_event_at=state.last_event_at,
        daily_metrics=[
            DailyEntry(
                date=r.day, variant_name=r.variant, impressions=r.impressions, clicks=r.clicks
            )
            for r in state.daily
        ],
        raw_metrics=[
            RawEntry(received_at=r.received_at, date=r.day, payload=r.payload) for r in state.raw
        ],
        allocations=[
            AllocationEntry.model_validate(a, from_attributes=True) for a in state.allocations
        ],
        decisions=[DecisionEntry.model_validate(d, from_attributes=True) for d in state.decisions],
        feedback=sorted(state.feedback),
        bandit_states=[
            ArmStateEntry.model_validate(a, from_attributes=True) for a in state.arm_states
        ],
        snapshots=snapshots,
    )
