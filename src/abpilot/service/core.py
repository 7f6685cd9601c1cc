"""The operations users perform, once, on a Store. REST, CLI and Python API call these."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, NamedTuple, Self

from abpilot.bandits.config import BanditOptions
from abpilot.contextual.policy import ContextualOptions
from abpilot.domain.assignment import NOT_IN_EXPERIMENT
from abpilot.domain.errors import (
    AbpilotError,
    ConcurrentModification,
    DefinitionChanged,
    StoreUnavailable,
    ValidationError,
    WinnerNotSupported,
    WrongStatus,
)
from abpilot.domain.experiment import (
    MAX_METRICS,
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    Variant,
)
from abpilot.domain.rules import (
    ExperimentRules,
    check_covariates,
    check_unit_dimensions,
    experiment_rules,
)
from abpilot.domain.text import check_text, plain_text
from abpilot.observability import EVENTS, RECALCULATION_SECONDS, RECALCULATIONS
from abpilot.service.allocation import (
    AllocationResult,
    Allocator,
    DailyInput,
    RecalculationOutcome,
)
from abpilot.service.contextual import ContextualService
from abpilot.service.events import (
    EventInput,
    check_hash_assigned,
    check_ingests_events,
    check_running,
    prune_event_ids,
    resolve_events,
)
from abpilot.service.interleaving import InterleavingService
from abpilot.service.lookup import CachedExperiment, Clock, ExperimentLookup, utc_now
from abpilot.service.reading import (
    CounterSource,
    ExperimentMetrics,
    analyse_experiment,
    experiment_metrics,
    segment_breakdown,
)
from abpilot.service.specs import (
    COMPLETION,
    MAX_UNIT_ID,
    ExperimentChanges,
    aliased,
    build_experiment,
    check_unit_id,
    updated_experiment,
)
from abpilot.service.specs import experiment_type as resolve_type
from abpilot.service.transfer import TransferService
from abpilot.service.warehouse import DEFAULT_TIMEOUT_SECONDS, WarehouseService
from abpilot.stats.analysis import Analysis
from abpilot.stats.corrections import Correction
from abpilot.stats.decision import Action
from abpilot.stats.segments import SegmentBreakdown
from abpilot.store.base import (
    AllocationRecord,
    ApplyResult,
    DailyRow,
    EventKind,
    EventRecord,
    MetricTotals,
    Store,
)
from abpilot.warehouse.fold import dimensions_alias, fold_changes
from abpilot.warehouse.fold import fold as fold_warehouse
from abpilot.warehouse.spec import analysed_in_warehouse

_ZERO = MetricTotals()


REGISTRATION_ROUNDS = 3
# How many times a batch is resolved again on a definition another worker changed meanwhile
# (beyond one round per metric registered meanwhile).
DEFINITION_ROUNDS = 3


class Assignment(NamedTuple):
    """A unit's variant (None outside the traffic allocation). A NamedTuple rather than a frozen
    dataclass: it is as immutable and four times cheaper to build on the hot path.

    It is true when the unit is in the experiment and false outside the traffic allocation, so
    ``if assignment:`` reads as "show the unit its variant"."""

    experiment_id: str
    unit_id: str
    in_experiment: bool
    variant: Variant | None

    def __bool__(self) -> bool:
        return self.in_experiment


class ExperimentService:
    """Experiments, assignment and event intake on one store, and the services of the other
    experiment types: ``contextual``, ``interleaving`` and ``transfer`` (export and import).

    The constructor wires them: one ``Allocator`` and one ``ExperimentLookup`` (experiment
    definitions cached for ``cache_seconds``, so the assignment path does not read the store on
    every call; this process sees its own changes at once, other workers' changes within
    ``cache_seconds``), which every service here shares.

    ``close()`` closes the store (once; later calls do nothing), and the service is a context
    manager that does so on exit: ``with abpilot.open(url) as service: ...``.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utc_now,
        cache_seconds: float = 1.0,
        max_batch_events: int = 10_000,
        bandit_defaults: BanditOptions | None = None,
        warehouse_url: str | None = None,
        warehouse_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.store = store
        self.max_batch_events = max_batch_events
        self.bandit_defaults = bandit_defaults or BanditOptions()
        self.allocator = Allocator(store, clock=clock, defaults=self.bandit_defaults)
        self._on_delete: list[Callable[[str], object]] = []
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.lookup = ExperimentLookup(
            store, self.allocator, clock=clock, cache_seconds=cache_seconds
        )
        self.contextual = ContextualService(
            self.lookup,
            defaults=ContextualOptions(
                prior_alpha=self.bandit_defaults.prior_alpha,
                prior_beta=self.bandit_defaults.prior_beta,
                samples=self.bandit_defaults.samples,
            ),
        )
        """Decisions and feedback of contextual_bandit experiments: ``.decide``, ``.feedback``,
        ``.stats``, ``.performance``, ``.offpolicy``."""
        self.interleaving = InterleavingService(self.lookup)
        """Impressions, clicks and analysis of interleaving experiments: ``.interleave``,
        ``.record_clicks``, ``.analyse``."""
        self.transfer = TransferService(self.lookup, bandit_defaults=self.bandit_defaults)
        """Export to and import from the versioned JSON document: ``.export``, ``.import_``."""
        self.warehouse = WarehouseService(
            self.lookup, url=warehouse_url, timeout_seconds=warehouse_timeout_seconds
        )
        """Warehouse sources and refreshes (``WAREHOUSE_URL``): ``.put_source``,
        ``.list_sources``, ``.check``, ``.refresh``, ``.state``."""
        self._closed = False
        self._close_lock = threading.Lock()

    # lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store (its connections); idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.warehouse.close()
        self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # experiments -----------------------------------------------------------------------------

    def create_experiment(
        self,
        *,
        key: str | None = None,
        variants: Sequence[Variant | Mapping[str, Any]],
        name: str | None = None,
        type: ExperimentType | str | None = None,
        description: str = "",
        traffic_allocation: float = 1.0,
        metrics: Sequence[Metric | Mapping[str, Any]] = (),
        salt: str | None = None,
        settings: Mapping[str, Any] | None = None,
        experiment_type: ExperimentType | str | None = None,
        source: str | None = None,
        assignment_source: str | None = None,
        dimension: str | None = None,
        daily_source: str | None = None,
        dimensions: Sequence[str] | None = None,
    ) -> Experiment:
        """A new draft. ``key`` defaults to a slug of ``name`` (409 when taken), a variant's
        key to a slug of its name, and weights to an equal split; ``experiment_type`` is an
        alias of ``type`` (``ab_test`` by default). Without ``metrics`` the experiment registers
        each metric a conversion names on first use.

        With ``source="warehouse"`` the experiment is analysed from the warehouse: it names its
        ``assignment_source`` (its ``dimensions`` are columns of it; ``dimension`` is an alias
        of one), and each metric its
        ``fact_source``, ``column``, ``aggregation`` and ``window_hours`` (kept in
        ``settings.warehouse``); ``warehouse.refresh`` brings its aggregates. A bandit fed daily
        totals names its ``daily_source`` instead: a refresh records its days as posted."""
        metrics, settings = fold_warehouse(
            source=source,
            assignment_source=assignment_source,
            dimension=dimension,
            daily_source=daily_source,
            metrics=list(metrics),
            settings=settings or {},
        )
        dimensions = dimensions_alias(dimension, dimensions)
        experiment = build_experiment(
            bandit_defaults=self.bandit_defaults,
            id=str(uuid.uuid4()),
            key=key,
            name=name,
            type=resolve_type(type, experiment_type),
            description=description,
            traffic_allocation=traffic_allocation,
            variants=variants,
            metrics=metrics,
            salt=salt,
            settings=settings or {},
            now=self.clock(),
            dimensions=dimensions,
        )
        self.store.create_experiment(experiment)
        return experiment

    def get_experiment(self, experiment: str) -> Experiment:
        """The experiment with this id or key, read from the store."""
        return self.lookup.get(experiment)

    def get_cached_experiment(self, experiment: str) -> Experiment:
        """The experiment with this id or key as the assignment path sees it: from the cache, at
        most ``cache_seconds`` old (read from the store when it is older)."""
        return self.lookup.cached(experiment).experiment

    def list_experiments(self, status: ExperimentStatus | str | None = None) -> list[Experiment]:
        return self.store.list_experiments(ExperimentStatus(status) if status else None)

    def update_experiment(self, experiment: str, changes: ExperimentChanges) -> Experiment:
        current = self.get_experiment(experiment)
        if changes.metrics is not None:
            metrics, settings = fold_changes(
                list(changes.metrics),
                current.settings if changes.settings is None else changes.settings,
            )
            changes = replace(
                changes,
                metrics=metrics,
                settings=changes.settings if settings is None else settings,
            )
        updated = updated_experiment(
            current, changes, now=self.clock(), bandit_defaults=self.bandit_defaults
        )
        return self._save(current, updated)

    def delete_experiment(self, experiment: str) -> None:
        current = self.get_experiment(experiment)
        if current.status is ExperimentStatus.RUNNING:
            raise WrongStatus(
                f"experiment '{current.key}' is running; pause or complete it before deleting it",
                field="status",
            )
        self.store.delete_experiment(current.id)
        self.lookup.forget(current.id)
        for forget in self._on_delete:
            forget(current.id)

    def on_delete(self, forget: Callable[[str], object]) -> None:
        """Call ``forget(experiment_id)`` after an experiment is deleted: a service that keeps
        documents of its own about experiments (daily snapshots) removes them with it."""
        self._on_delete.append(forget)

    def set_status(
        self,
        experiment: str,
        status: ExperimentStatus | str,
        *,
        winner: str | None = None,
        override: bool = False,
    ) -> Experiment:
        """Move through the lifecycle; completing with a ``winner`` is ``end_experiment``'s
        (the decision must support it, or ``override``)."""
        current = self.get_experiment(experiment)
        try:
            target = ExperimentStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in ExperimentStatus)
            raise ValidationError(
                f"unknown status '{status}' (allowed: {allowed})", field="status"
            ) from None
        if winner is not None and target is not ExperimentStatus.COMPLETED:
            raise ValidationError("a winner can be named only when completing", field="winner")
        if override and winner is None:
            raise ValidationError(
                "override applies only when completing with a winner", field="override"
            )
        if winner is not None:
            return self.end_experiment(current.id, winner=winner, override=override)
        moved = current.with_status(target, now=self.clock())
        return self._save(current, replace(moved, winner=winner or moved.winner))

    def start_experiment(self, experiment: str) -> Experiment:
        return self.set_status(experiment, ExperimentStatus.RUNNING)

    def pause_experiment(self, experiment: str) -> Experiment:
        return self.set_status(experiment, ExperimentStatus.PAUSED)

    def resume_experiment(self, experiment: str) -> Experiment:
        return self.set_status(experiment, ExperimentStatus.RUNNING)

    def end_experiment(
        self, experiment: str, *, winner: str | None = None, override: bool = False
    ) -> Experiment:
        """Complete the experiment. Without ``winner``, the variant the final analysis's
        decision ships, if any. A ``winner`` the decision does not support (it supports the
        variant it ships, and the control when it rolls back or finds no difference) is refused
        with a 409 unless ``override``, which is recorded in ``settings.completion`` with the
        decision it overrode. Experiments whose analysis is not the A/B analysis (contextual
        bandits, interleaving) store ``winner`` as given, or else the analysis's winner."""
        if override and winner is None:
            raise ValidationError(
                "override applies only when completing with a winner", field="override"
            )
        current = self.get_experiment(experiment)
        moved = current.with_status(ExperimentStatus.COMPLETED, now=self.clock())
        if winner is not None and current.variant(winner) is None:
            raise ValidationError(
                f"experiment '{current.key}' has no variant '{winner[:100]}'", field="winner"
            )
        decided = current.type in (ExperimentType.AB_TEST, ExperimentType.BANDIT)
        if winner is not None and not decided:
            return self._save(current, replace(moved, winner=winner))
        final = self.analyze_experiment(current.id)
        decision = final.decision
        if winner is None:
            if not decided or decision is None:
                winner = final.winner.key if final.winner else None
            elif decision.action is Action.SHIP:
                winner = decision.variant
            return self._save(current, replace(moved, winner=winner))
        if decision is None or decision.supports(winner, control=current.control.key):
            return self._save(current, replace(moved, winner=winner))
        codes = ", ".join(r.code.value for r in decision.reasons)
        if not override:
            raise WinnerNotSupported(
                f"the analysis' decision is {decision.action.value}"
                f"{f' ({decision.variant})' if decision.variant else ''} for {codes}, which does "
                f"not support '{winner}' as the winner; complete without a winner, or pass "
                "override true to record that the decision was overridden",
                field="winner",
            )
        record = {
            "winner": winner,
            "override": True,
            "at": moved.updated_at.isoformat(),
            "decision": {
                "action": decision.action.value,
                "variant": decision.variant,
                "reasons": [r.code.value for r in decision.reasons],
            },
        }
        settings = {**current.settings, COMPLETION: record}
        return self._save(current, replace(moved, winner=winner, settings=settings))

    def _save(self, current: Experiment, updated: Experiment) -> Experiment:
        updated = replace(updated, version=current.version + 1)
        self.store.update_experiment(updated, expected_version=current.version)
        self.lookup.saved(current, updated)
        return updated

    # assignment ------------------------------------------------------------------------------

    def get_variant_for_user(
        self,
        experiment: str,
        unit_id: str,
        *,
        record: bool = True,
        expose: bool = False,
        event_id: str | None = None,
        covariates: Mapping[str, float] | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> Assignment:
        """The unit's variant. With ``record`` the assignment is stored (first one wins) and
        counted; without it nothing is written. A/B tests answer from the hash alone; a bandit
        answers with the unit's stored (sticky) variant, else by the hash on the weights in force,
        so a weight change moves new units only.

        With ``expose`` the unit's exposure is counted too, in the same atomic store step as the
        assignment (one round trip), under the variant returned; ``event_id`` makes a retried
        call count once. A unit outside the traffic allocation is neither assigned nor exposed.
        """
        cached = self.lookup.cached(experiment)
        exp = cached.experiment
        if not cached.hash_assignable:
            check_running(exp, "units are assigned")
            check_hash_assigned(exp)
        if not plain_text(unit_id, MAX_UNIT_ID):  # else one call less on every assignment
            check_unit_id(unit_id)
        if expose or event_id is not None or covariates is not None or dimensions is not None:
            return self._assign_with_facts(
                cached, unit_id, record, expose, event_id, covariates, dimensions
            )
        if cached.sticky and not record:
            stored = self.store.get_assignments(exp.id, [unit_id]).get(unit_id)
            if stored is not None:
                return Assignment(exp.id, unit_id, True, exp.variant(stored.variant))
        index = cached.bucketing.variant_index(unit_id)
        if index == NOT_IN_EXPERIMENT:
            return Assignment(exp.id, unit_id, in_experiment=False, variant=None)
        variant = exp.variants[index]
        if record and (cached.sticky or exp.type is not ExperimentType.BANDIT):
            result = self.store.assign(exp.id, unit_id, variant.key, cached.period)
            if result.variant != variant.key:
                variant = exp.variant(result.variant) or variant
        return Assignment(exp.id, unit_id, in_experiment=True, variant=variant)

    def _assign_with_facts(
        self,
        cached: CachedExperiment,
        unit_id: str,
        record: bool,
        expose: bool,
        event_id: str | None,
        covariates: Mapping[str, float] | None,
        dimensions: Mapping[str, str] | None,
    ) -> Assignment:
        """``get_variant_for_user`` with an exposure, an event id, covariates or dimensions."""
        if event_id is not None and not expose:
            raise ValidationError("event_id names the exposure: it needs expose", field="event_id")
        if expose:
            if not record:
                raise ValidationError(
                    "an exposure is recorded with the assignment: expose needs record",
                    field="expose",
                )
            if event_id is not None:
                check_text(event_id, field="event_id", max_length=MAX_UNIT_ID)
            check_ingests_events(cached.experiment)
            facts = (check_covariates(covariates), check_unit_dimensions(dimensions))
            return self._assign_exposed(cached, unit_id, event_id, facts)
        named = "covariates" if covariates is not None else "dimensions"
        raise ValidationError(
            f"{named} describe the unit at its exposure: they need expose", field=named
        )

    def _assign_exposed(
        self,
        cached: CachedExperiment,
        unit_id: str,
        event_id: str | None,
        facts: tuple[Mapping[str, float] | None, Mapping[str, str] | None] = (None, None),
    ) -> Assignment:
        exp = cached.experiment
        index = cached.bucketing.variant_index(unit_id)
        if index == NOT_IN_EXPERIMENT:
            return Assignment(exp.id, unit_id, in_experiment=False, variant=None)
        hashed = exp.variants[index]
        event = EventRecord(
            EventKind.EXPOSURE,
            exp.id,
            hashed.key,
            unit_id=unit_id,
            event_id=event_id,
            period=cached.period,
            received_at=self.clock(),
            covariates=facts[0],
            dimensions=facts[1],
            rules=cached.rules,
        )
        result = self.store.assign_and_expose(event)
        EVENTS.labels("applied" if result.exposed else "duplicate").inc()
        variant = exp.variant(result.variant) or hashed
        return Assignment(exp.id, unit_id, in_experiment=True, variant=variant)

    def get_variants_for_users(self, experiment: str, unit_ids: Sequence[str]) -> list[str | None]:
        """Variant keys of many units by the hash alone (None outside the traffic); no writes."""
        cached = self.lookup.cached(experiment)
        check_running(cached.experiment, "units are assigned")
        check_hash_assigned(cached.experiment)
        for i, unit_id in enumerate(unit_ids):
            if not plain_text(unit_id, MAX_UNIT_ID):  # the field's name only for an error
                check_text(unit_id, field=f"unit_ids[{i}]", max_length=MAX_UNIT_ID)
        keys = [v.key for v in cached.experiment.variants]
        return [
            None if i == NOT_IN_EXPERIMENT else keys[i]
            for i in cached.bucketing.variant_indices(unit_ids).tolist()
        ]

    # events ----------------------------------------------------------------------------------

    def record_exposure(
        self,
        *,
        experiment: str | None = None,
        unit_id: str | None = None,
        variant: str | None = None,
        event_id: str | None = None,
        timestamp: datetime | None = None,
        experiment_id: str | None = None,
        variant_id: str | None = None,
        covariates: Mapping[str, float] | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> ApplyResult:
        """One exposure; ``experiment_id`` and ``variant_id`` are aliases of ``experiment`` and
        ``variant`` (OpenInsight's names). ``covariates`` and ``dimensions`` describe the unit:
        its first exposure stores them."""
        event = EventInput(
            EventKind.EXPOSURE,
            aliased(experiment, experiment_id, "experiment", "experiment_id", required=True),
            unit_id,
            aliased(variant, variant_id, "variant", "variant_id"),
            event_id=event_id,
            timestamp=timestamp,
            covariates=covariates,
            dimensions=dimensions,
        )
        return self.record_events([event])

    def record_conversion(
        self,
        *,
        experiment: str | None = None,
        unit_id: str | None = None,
        variant: str | None = None,
        metric: str | None = None,
        value: float | None = None,
        event_id: str | None = None,
        timestamp: datetime | None = None,
        experiment_id: str | None = None,
        variant_id: str | None = None,
        covariates: Mapping[str, float] | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> ApplyResult:
        """One conversion; ``experiment_id`` and ``variant_id`` are aliases of ``experiment`` and
        ``variant`` (OpenInsight's names)."""
        event = EventInput(
            EventKind.CONVERSION,
            aliased(experiment, experiment_id, "experiment", "experiment_id", required=True),
            unit_id,
            aliased(variant, variant_id, "variant", "variant_id"),
            metric,
            value,
            event_id,
            timestamp,
            covariates,  # refused: a conversion carries no unit facts
            dimensions,
        )
        return self.record_events([event])

    def record_events(self, events: Sequence[EventInput], *, field_prefix: str = "") -> ApplyResult:
        """Validate all events, then count all of them or none.

        The definitions come from this process's cache and no stored assignment is read: the
        store checks, in the same atomic step as the counting, that each definition is still
        the stored one (an experiment completed on another worker is refused at once) and that
        each converting unit has an assignment. A changed definition is read again and the
        batch resolved anew; a refusal is decided the exact way (definitions and assignments
        read from the store), which names the event at fault.

        Conversions naming a metric new to an experiment with open metrics register it first
        (a compare-and-set of the definition, retried when another worker changed it), then
        the batch is resolved again against the stored definitions and counted."""
        if len(events) > self.max_batch_events:
            raise ValidationError(
                f"a batch holds at most {self.max_batch_events} events (got {len(events)})",
                field=field_prefix or "events",
            )
        prefix = (lambda i: f"{field_prefix}[{i}]") if field_prefix else (lambda i: "")
        try:
            result = self._count_events(events, prefix)
        except AbpilotError:
            EVENTS.labels("refused").inc(len(events))
            raise
        EVENTS.labels("applied").inc(result.applied)
        EVENTS.labels("duplicate").inc(result.duplicates)
        return result

    def _count_events(
        self, events: Sequence[EventInput], prefix: Callable[[int], str]
    ) -> ApplyResult:
        exact = False  # first on the cached definitions, without reading assignments
        for _ in range(DEFINITION_ROUNDS + MAX_METRICS):
            versions: dict[str, int] = {}
            try:
                records = self._resolve(events, prefix, versions, exact=exact)
                if records is None:  # a new metric to register: only once the batch is good
                    exact = True
                    continue
                return self.store.apply_current_events(records, versions)
            except DefinitionChanged as changed:
                self.lookup.forget(changed.experiment_id)  # read it again from the store
            except StoreUnavailable:
                raise
            except AbpilotError:
                if exact:
                    raise
                exact = True  # refused on the cache, without assignments: decide it exactly
        raise ConcurrentModification(
            "the experiment kept changing while this batch was counted; send it again",
            field="experiment_id",
        )

    def _resolve(
        self,
        events: Sequence[EventInput],
        prefix: Callable[[int], str],
        versions: dict[str, int],
        *,
        exact: bool,
    ) -> list[EventRecord] | None:
        """The batch's records, ``versions`` filled with the definitions they were resolved
        against: cached ones, or (``exact``) read from the store with each unit's assignment.
        A batch naming a new metric is None unless ``exact``: a metric is registered only for
        a batch resolved with its units' assignments, so a refused event registers nothing."""

        def load(reference: str) -> Experiment:
            entry = self.lookup.load(reference) if exact else self.lookup.cached(reference)
            versions[entry.experiment.id] = entry.experiment.version
            return entry.experiment

        def rules_of(experiment: Experiment) -> ExperimentRules | None:
            entry = self.lookup.cached(experiment.id)  # the rules cached with the definition
            return entry.rules if entry.experiment is experiment else experiment_rules(experiment)

        for _ in range(REGISTRATION_ROUNDS):
            new_metrics: dict[str, list[Metric]] = {}
            records = resolve_events(
                events,
                load=load,
                stored_assignments=self.store.get_assignments,
                bucketing=lambda exp: self.lookup.cached(exp.id).bucketing,
                current_period=lambda exp: self.lookup.cached(exp.id).period,
                now=self.clock(),
                field_prefix=prefix,
                new_metrics=new_metrics,
                read_assignments=exact,
                rules_of=rules_of,
            )
            if not new_metrics:
                return records
            if not exact:
                return None
            for experiment_id, metrics in new_metrics.items():
                self._register_metrics(experiment_id, metrics)
        raise ConcurrentModification(  # pragma: no cover - each round registers what it found
            "the experiment's metrics kept changing while this batch was resolved; retry"
        )

    def _register_metrics(self, experiment_id: str, metrics: Sequence[Metric]) -> None:
        """Add ``metrics`` to the stored definition unless it has them (a metric another worker
        registered first keeps its kind). Each failed compare-and-set means another change was
        stored; registrations are bounded by ``MAX_METRICS``, so the loop ends."""
        for _ in range(MAX_METRICS + REGISTRATION_ROUNDS):
            current = self.get_experiment(experiment_id)
            missing: list[Metric] = []  # each new key once, as its first conversion set it
            for metric in metrics:
                if current.metric(metric.key) is None and metric.key not in {
                    m.key for m in missing
                }:
                    missing.append(metric)
            if not missing:
                return
            changes = ExperimentChanges(metrics=[*current.metrics, *missing])
            try:
                self._save(
                    current,
                    updated_experiment(
                        current, changes, now=self.clock(), bandit_defaults=self.bandit_defaults
                    ),
                )
                return
            except ConcurrentModification:
                continue
        raise ConcurrentModification(  # pragma: no cover - see the docstring
            f"experiment {experiment_id} kept changing while metrics were registered; retry",
            field="metric",
        )

    # reading -------------------------------------------------------------------------------

    def get_metrics(self, experiment: str) -> ExperimentMetrics:
        """Counters and per-metric summaries of every variant, summed over periods (of the
        latest warehouse refresh for a warehouse experiment)."""
        exp = self.get_experiment(experiment)
        return experiment_metrics(self._counter_source(exp), exp)

    def _counter_source(self, exp: Experiment) -> CounterSource:
        """Where the analysis reads ``exp``'s counters: the store, or its latest refresh."""
        if analysed_in_warehouse(exp.settings):
            return self.warehouse.counters(exp)
        return self.store

    def analyze_experiment(
        self,
        experiment: str,
        *,
        metric: str | None = None,
        correction: Correction | str | None = None,
        sequential: bool | None = None,
        alpha: float | None = None,
    ) -> Analysis:
        """Every variant against the control; the request's options override the experiment's
        ``settings.analysis``. Multiple comparisons are corrected within two families: the primary
        (first) metric's variants, and the other metrics' variants together."""
        exp = self.get_experiment(experiment)
        return analyse_experiment(
            self._counter_source(exp),
            exp,
            metric=metric,
            correction=correction,
            sequential=sequential,
            alpha=alpha,
        )

    def analyze_segments(
        self,
        experiment: str,
        *,
        dimension: str,
        metric: str | None = None,
        correction: Correction | str | None = None,
        sequential: bool | None = None,
        alpha: float | None = None,
    ) -> SegmentBreakdown:
        """``metric`` analysed per segment of the declared ``dimension``: each segment's full
        analysis, BH across segments and Cochran's Q per metric; the overall analysis
        (``analyze_experiment``) is not changed by it."""
        exp = self.get_experiment(experiment)
        return segment_breakdown(
            self._counter_source(exp),
            exp,
            dimension=dimension,
            metric=metric,
            correction=correction,
            sequential=sequential,
            alpha=alpha,
        )

    # adaptive allocation ---------------------------------------------------------------------

    def get_allocation(self, experiment: str) -> AllocationResult:
        """Thompson weights from the data now (daily windows, else events); nothing stored."""
        exp = self.get_experiment(experiment)
        return self.allocator.compute(exp, self.store.get_counters(exp.id))

    def recalculate(self, experiment: str) -> RecalculationOutcome:
        """Recompute the weights and, when they changed, put them in force as a new period."""
        exp = self.get_experiment(experiment)
        if exp.status is not ExperimentStatus.RUNNING:
            raise WrongStatus(
                f"experiment '{exp.key}' is {exp.status}; weights are recalculated only while it"
                " is running",
                field="status",
            )
        outcome = self.allocator.recalculate(exp, self.store.get_counters(exp.id))
        self.lookup.forget(exp.id)
        return outcome

    def recalculate_all(self) -> list[RecalculationOutcome]:
        """Every running bandit; one failing experiment does not stop the others."""
        with RECALCULATION_SECONDS.time():
            outcomes = self.allocator.recalculate_all()
        for outcome in outcomes:
            RECALCULATIONS.labels(outcome.status).inc()
        self.lookup.clear()
        return outcomes

    def prune_event_ids(self) -> int:
        """Forget the event ids claimed before the store's dedupe window
        (``EVENT_ID_RETENTION_DAYS``), in small batches: the leader's ``prune-event-ids`` job.
        How many were removed (0 with a window of 0: ids are kept forever)."""
        return prune_event_ids(self.store, now=self.clock())

    def record_daily_metrics(
        self,
        experiment: str,
        *,
        day: date,
        metrics: Sequence[DailyInput],
        payload: Any = None,
    ) -> list[DailyRow]:
        """A day's impressions and clicks per variant: the payload is kept as sent, and one
        clean row per (variant, day) replaces any earlier post for that day."""
        exp = self.get_experiment(experiment)
        raw = (
            payload
            if payload is not None
            else {
                "date": day.isoformat(),
                "metrics": [
                    {"variant_name": m.variant, "impressions": m.impressions, "clicks": m.clicks}
                    for m in metrics
                ],
            }
        )
        return self.allocator.record_daily(exp, day, metrics, raw)

    def get_history(self, experiment: str) -> tuple[list[AllocationRecord], list[DailyRow]]:
        """Every weight change (oldest first) and the daily metrics over time."""
        exp = self.get_experiment(experiment)
        return self.store.list_allocations(exp.id), self.store.get_daily_metrics(exp.id)

    def ready(self) -> None:
        self.store.ping()
