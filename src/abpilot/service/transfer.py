"""Export and import: move experiments, with everything recorded for them, between stores.

``export`` reads each experiment's whole state (``abpilot.store.state``) into the versioned JSON
document of ``transfer_schema``; ``import_`` validates such a document completely (shape, then
every experiment definition, then every reference to a variant, metric or period) before it
writes anything, refuses experiments whose id or key is taken (or skips them, if asked), and
restores each experiment in one atomic step of the target store. Every read answers afterwards
as it did in the source store, and later events count as they would have there: units keep
their variants, a repeated event id is still a duplicate, sums of squares grow from each unit's
running total.

Export reads one experiment at a time; for an exact snapshot, export while no traffic arrives
(pause the experiments or stop the service first).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from abpilot.bandits.config import BanditOptions
from abpilot.domain.errors import DuplicateKey, ValidationError
from abpilot.domain.experiment import Experiment, ExperimentType
from abpilot.domain.text import json_problem
from abpilot.service import companion, monitoring
from abpilot.service.interleaving import IMPRESSION
from abpilot.service.lookup import ExperimentLookup
from abpilot.service.specs import COMPLETION, build_experiment
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

# The namespaces of shared documents an export carries.
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
            experiments=[_entry(self.dump(e)) for e in chosen],
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

    def import_(self, document: Mapping[str, Any], *, skip_existing: bool = False) -> ImportResult:
        """Validate the whole document, then restore its experiments and documents.

        Raises ``ValidationError`` (naming the offending field) and writes nothing when the
        document is malformed; raises ``DuplicateKey`` and writes nothing when an experiment's
        id or key is taken, unless ``skip_existing``, which leaves those experiments as they are.
        """
        parsed = _parse(document)
        states = [self._state(entry, n) for n, entry in enumerate(parsed.experiments)]
        _check_unique(states)
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
        for d in parsed.documents:
            store.put_document(d.namespace, d.key, d.content, d.digest, d.updated_at)
        return ImportResult(
            imported=[s.experiment.key for s in fresh],
            skipped=skipped,
            documents=len(parsed.documents),
        )

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
        _check_references(entry, state, where)
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


def _parse(document: Mapping[str, Any]) -> ExportFile:
    if not isinstance(document, Mapping):
        raise ValidationError("an export document must be a JSON object", field="")
    if document.get("format") != FORMAT:
        raise ValidationError(f"not an abpilot export: 'format' must be '{FORMAT}'", field="format")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ValidationError(
            f"schema_version {document.get('schema_version')!r} is not supported (this abpilot "
            f"reads version {SCHEMA_VERSION})",
            field="schema_version",
        )
    found = json_problem(document, max_depth=None)  # text every store can hold, finite numbers
    if found is not None:
        where, problem = found
        raise ValidationError(f"{where} {problem}", field=where)
    try:
        return ExportFile.model_validate(document)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in first["loc"])
        field = field.replace(".[", "[")
        raise ValidationError(
            f"{field}: {first['msg']} ({error.error_count()} problem(s) in all)", field=field
        ) from None


def _check_unique(states: Sequence[ExperimentState]) -> None:
    for attribute in ("id", "key"):
        seen: set[str] = set()
        for n, state in enumerate(states):
            value = getattr(state.experiment, attribute)
            if value in seen:
                raise ValidationError(
                    f"experiments[{n}]: {attribute} '{value}' appears twice in the file",
                    field=f"experiments[{n}].definition.{attribute}",
                )
            seen.add(value)


def _check_references(entry: ExperimentEntry, state: ExperimentState, where: str) -> None:
    """Every variant, metric and period named in the recorded state belongs to the experiment."""
    variants = {v.key for v in state.experiment.variants}
    # An interleaving experiment logs each impression as a decision of the arm "impression".
    interleaving = state.experiment.type is ExperimentType.INTERLEAVING
    arms = variants | {IMPRESSION} if interleaving else variants
    periods = len(state.allocations)

    def check(ok: bool, field: str, message: str) -> None:
        if not ok:
            raise ValidationError(f"{where}.{field}: {message}", field=f"{where}.{field}")

    for i, a in enumerate(entry.allocations):
        check(a.period == i + 1, f"allocations[{i}].period", f"must be {i + 1} (in order)")
        check(set(a.weights) <= variants, f"allocations[{i}].weights", "names an unknown variant")
    for i, (_, variant, period) in enumerate(entry.assignments):
        check(variant in variants, f"assignments[{i}]", f"unknown variant '{variant}'")
        check(period <= periods, f"assignments[{i}]", f"period {period} has no allocation")
    for i, c in enumerate(entry.counters):
        check(c.variant in variants, f"counters[{i}].variant", f"unknown variant '{c.variant}'")
        check(c.period <= periods, f"counters[{i}].period", f"{c.period} has no allocation")
    for i, d in enumerate(entry.daily_metrics):
        check(d.variant_name in variants, f"daily_metrics[{i}]", "unknown variant")
        check(d.clicks <= d.impressions, f"daily_metrics[{i}]", "more clicks than impressions")
    for i, decided in enumerate(entry.decisions):
        check(decided.arm in arms, f"decisions[{i}].arm", f"unknown arm '{decided.arm}'")
    decisions = {d.id for d in entry.decisions}
    for i, (decision, _) in enumerate(entry.feedback):
        check(decision in decisions, f"feedback[{i}]", f"unknown decision '{decision}'")
    for i, s in enumerate(entry.bandit_states):
        check(s.arm in arms, f"bandit_states[{i}].arm", f"unknown arm '{s.arm}'")
    for field, items in (
        ("assignments", [a[0] for a in entry.assignments]),
        ("exposed_units", entry.exposed_units),
        ("unit_totals", [t[:2] for t in entry.unit_totals]),
        ("event_ids", [i if isinstance(i, str) else i[0] for i in entry.event_ids]),
        ("counters", [(c.period, c.variant) for c in entry.counters]),
        ("daily_metrics", [(d.date, d.variant_name) for d in entry.daily_metrics]),
        ("decisions", [d.id for d in entry.decisions]),
        ("feedback", entry.feedback),
        ("bandit_states", [(s.context_key, s.arm) for s in entry.bandit_states]),
    ):
        repeated = _first_repeat(items)
        check(repeated is None, field, f"{repeated!r:.120} appears twice")
    assigned = state.units.assignments
    for unit in entry.exposed_units:
        check(unit in assigned, "exposed_units", f"unit '{unit[:100]}' is exposed, not assigned")


def _first_repeat(items: Sequence[object]) -> object | None:
    seen: set[object] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


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


def _entry(state: ExperimentState) -> ExperimentEntry:
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
    )
