"""Resolve incoming events to variants and validate them, before anything is counted."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from abpilot.domain.assignment import NOT_IN_EXPERIMENT, Bucketing
from abpilot.domain.errors import (
    AbpilotError,
    Conflict,
    EventsNotIngested,
    UnitNotAssigned,
    ValidationError,
    WrongStatus,
)
from abpilot.domain.experiment import (
    MAX_METRICS,
    Experiment,
    ExperimentStatus,
    Metric,
    MetricKind,
)
from abpilot.domain.inputs import EventInput as EventInput  # re-exported: its old home
from abpilot.domain.rules import (
    ExperimentRules,
    check_covariates,
    check_unit_dimensions,
    experiment_rules,
)
from abpilot.domain.text import check_number, check_text
from abpilot.service.specs import check_reference, new_metric
from abpilot.store.base import EventKind, EventRecord, EventStore, StoredAssignment
from abpilot.warehouse.spec import SETTINGS_KEY, analysed_in_warehouse

MAX_ID_LENGTH = 256
# From this many units of an experiment in a batch on, their variants are hashed in one NumPy
# pass (below it NumPy's fixed cost per call exceeds what it saves).
VECTORISED = 32
MAX_CLOCK_SKEW = timedelta(days=1)
# A StoredAssignment from a (variant, period) pair without the NamedTuple's Python-level
# constructor: a batch makes one per exposure.
_ASSIGNMENT = tuple.__new__
# Event ids a pruning step removes at most: one short transaction, so intake waits little.
PRUNE_BATCH = 1000


def prune_event_ids(store: EventStore, *, now: datetime, batch: int = PRUNE_BATCH) -> int:
    """Forget the event ids that have left the store's dedupe window at ``now``, ``batch`` at
    a time (each step its own short transaction); how many were removed."""
    removed = 0
    while step := store.prune_event_ids(now=now, limit=batch):
        removed += step
    return removed


def _prefixed(error: AbpilotError, prefix: str) -> AbpilotError:
    if prefix:
        error.field = f"{prefix}.{error.field}" if error.field else prefix.rstrip(".")
    return error


def check_running(experiment: Experiment, action: str) -> None:
    if experiment.status is not ExperimentStatus.RUNNING:
        raise WrongStatus(
            f"experiment '{experiment.key}' is {experiment.status}; {action} only while it is "
            "running",
            field="status",
        )


def check_ingests_events(experiment: Experiment) -> None:
    """Refuse events for an experiment analysed from the warehouse: its analysis reads the
    latest refresh of its assignment and fact sources, so an exposure or a conversion posted to
    abpilot would be stored and never counted. (A bandit fed only daily totals from the
    warehouse is analysed from its store, and takes events.)"""
    if analysed_in_warehouse(experiment.settings):
        source = experiment.settings[SETTINGS_KEY].get("assignment_source")
        raise EventsNotIngested(
            f"experiment '{experiment.key}' is analysed from the warehouse (source 'warehouse', "
            f"assignment source '{source}'): its exposures and conversions are read there by "
            "a refresh, and events posted to abpilot would never count; write them to the "
            "warehouse and refresh",
            field="source",
        )


def resolve_events(
    events: Sequence[EventInput],
    *,
    load: Callable[[str], Experiment],
    stored_assignments: Callable[[str, Iterable[str]], dict[str, StoredAssignment]],
    bucketing: Callable[[Experiment], Bucketing],
    current_period: Callable[[Experiment], int],
    now: datetime,
    field_prefix: Callable[[int], str] = lambda i: "",
    new_metrics: dict[str, list[Metric]] | None = None,
    read_assignments: bool = True,
    rules_of: Callable[[Experiment], ExperimentRules | None] = experiment_rules,
) -> list[EventRecord]:
    """Validate every event and resolve its variant; raise on the first bad one.

    A unit's variant comes from its stored assignment, or from an exposure earlier in the same
    batch, or (for an exposure) from the variant it names, else the deterministic hash.
    Conversions need an assignment. An event counts in its unit's allocation period, or in the
    current one when it has no unit. An event of an assigned unit counts under the unit's
    variant even when it names another: the store applies the same rule in its atomic step, so
    an assignment stored meanwhile by another worker (on other weights) wins there too.

    A conversion naming a metric its experiment does not have is refused, unless the experiment
    has open metrics and ``new_metrics`` is given: then the metric is added there (experiment id
    -> metrics, the kind set by the first such conversion) for the caller to register before the
    records are counted. ``rules_of`` gives an experiment's counting rules (a cache may hold
    them with the definition).

    Without ``read_assignments`` no stored assignment is read: a conversion of a unit that no
    earlier exposure of the batch assigned ``needs_assignment`` (the store's counting step
    refuses it if the unit has none), and an exposure takes the variant it names or its hash
    (the step counts it under the unit's stored assignment anyway). A refusal there may be
    one the stored assignment would have avoided (a unit outside today's traffic that was
    assigned before): the caller then resolves again reading them.
    """
    experiments: dict[str, Experiment] = {}
    references: set[str] = set()  # checked once each
    texts = not _plain_ids(events)  # the batch's ids checked at once, else event by event
    for i, event in enumerate(events):  # the events' own fields first: no store call before
        try:
            _check_fields(event, now, references, texts=texts)
        except AbpilotError as error:
            raise _prefixed(error, field_prefix(i)) from None
    for i, event in enumerate(events):
        if event.experiment in experiments:
            continue
        try:
            experiment = experiments[event.experiment] = load(event.experiment)
            check_running(experiment, "events are accepted")
            check_ingests_events(experiment)
        except AbpilotError as error:
            raise _prefixed(error, field_prefix(i)) from None
    known: dict[str, dict[str, StoredAssignment]] = {}
    periods: dict[str, int] = {}
    for ref, experiment in experiments.items():
        units = {e.unit_id for e in events if e.experiment == ref and e.unit_id is not None}
        read = units and read_assignments
        known[experiment.id] = stored_assignments(experiment.id, units) if read else {}
        periods[experiment.id] = current_period(experiment)
    records = []
    rules: dict[tuple[str, int], ExperimentRules | None] = {}
    hashed: dict[str, dict[str, str | None]] = {}  # experiment id -> unit -> variant key

    def hashed_variant(experiment: Experiment, unit: str) -> str | None:
        """The unit's variant by the hash (None: outside the traffic), from one vectorised
        pass over the batch's units of the experiment that need one (exposures naming no
        variant); a FeatureVisor feature's units are never hashed (``check_hash_assigned``)."""
        table = hashed.get(experiment.id)
        if table is None:
            check_hash_assigned(experiment)
            units = list(
                {
                    e.unit_id: None
                    for e in events
                    if e.kind is EventKind.EXPOSURE
                    and e.variant is None
                    and e.unit_id is not None
                    and experiments[e.experiment].id == experiment.id
                }
            )
            hashing = bucketing(experiment)
            if len(units) < VECTORISED:
                indices = [hashing.variant_index(u) for u in units]
            else:
                indices = hashing.variant_indices(units).tolist()
            keys = [v.key for v in experiment.variants]
            table = hashed[experiment.id] = {
                u: None if i == NOT_IN_EXPERIMENT else keys[i]
                for u, i in zip(units, indices, strict=True)
            }
        if unit in table:
            return table[unit]
        index = bucketing(experiment).variant_index(unit)
        return None if index == NOT_IN_EXPERIMENT else experiment.variants[index].key

    for i, event in enumerate(events):
        experiment = experiments[event.experiment]
        try:
            if new_metrics is not None and experiment.open_metrics:
                experiment = _with_new_metric(experiment, event, new_metrics)
                experiments[event.experiment] = experiment
            assigned, period = known[experiment.id], periods[experiment.id]
            version = (experiment.id, len(experiment.metrics))
            if version not in rules:
                rules[version] = rules_of(experiment)
            records.append(
                _resolve(
                    event,
                    experiment,
                    assigned,
                    hashed_variant,
                    period,
                    now,
                    rules[version],
                    read=read_assignments,
                )
            )
        except AbpilotError as error:
            raise _prefixed(error, field_prefix(i)) from None
    return records


def _with_new_metric(
    experiment: Experiment, event: EventInput, new_metrics: dict[str, list[Metric]]
) -> Experiment:
    """``experiment`` with the metric ``event`` names added when it is new (and noted in
    ``new_metrics``), so later events of the batch see its kind."""
    if event.kind is not EventKind.CONVERSION or event.metric is None:
        return experiment
    if experiment.metric(event.metric) is not None:
        return experiment
    metric = new_metric(event.metric, event.value)
    added = new_metrics.setdefault(experiment.id, [])
    if len(experiment.metrics) >= MAX_METRICS:
        raise ValidationError(
            f"experiment '{experiment.key}' has {MAX_METRICS} metrics, the most it may have; "
            f"'{event.metric[:100]}' cannot be added",
            field="metric",
        )
    added.append(metric)
    return replace(experiment, metrics=(*experiment.metrics, metric))


def _plain_ids(events: Sequence[EventInput]) -> bool:
    """Whether every unit id, event id, variant and metric of the batch is plainly good: text
    of ASCII without NUL, not blank, at most ``MAX_ID_LENGTH`` long. Checked
    for the whole batch at once (C loops over joined text); a batch where this fails, or that
    holds other text, is checked event by event, which names the event at fault."""
    ids = [
        text
        for e in events
        for text in (e.unit_id, e.event_id, e.variant, e.metric)
        if text is not None
    ]
    if not ids:
        return True
    try:
        joined = "".join(ids)
    except TypeError:  # not all text
        return False
    return (
        joined.isascii()
        and "\x00" not in joined
        and max(map(len, ids)) <= MAX_ID_LENGTH
        and all(map(str.strip, ids))
    )


def _check_fields(
    event: EventInput, now: datetime, references: set[str], *, texts: bool = True
) -> None:
    """What an event says of itself: its ids are text a store can hold (unless ``texts`` is
    off: ``_plain_ids`` found all of the batch's good), its time is sane (``references``: the
    experiment references checked already, which need no new check)."""
    if event.experiment not in references:
        check_reference(event.experiment)
        references.add(event.experiment)
    if texts:
        if event.unit_id is not None:
            check_text(event.unit_id, field="unit_id", max_length=MAX_ID_LENGTH)
        if event.event_id is not None:
            check_text(event.event_id, field="event_id", max_length=MAX_ID_LENGTH)
        for name, text in (("variant", event.variant), ("metric", event.metric)):
            if text is not None:
                check_text(text, field=name, max_length=MAX_ID_LENGTH)
    if event.covariates is not None or event.dimensions is not None:
        if event.kind is not EventKind.EXPOSURE:
            named = "covariates" if event.covariates is not None else "dimensions"
            raise ValidationError(
                f"{named} describe the unit at its exposure; a conversion carries none",
                field=named,
            )
        check_covariates(event.covariates)
        check_unit_dimensions(event.dimensions)
    if event.timestamp is not None:
        moment = event.timestamp if event.timestamp.tzinfo else event.timestamp.replace(tzinfo=UTC)
        if moment > now + MAX_CLOCK_SKEW:
            raise ValidationError(
                f"timestamp {moment.isoformat()} is more than a day in the future",
                field="timestamp",
            )


def _resolve(
    event: EventInput,
    experiment: Experiment,
    assigned: dict[str, StoredAssignment],
    hashed_variant: Callable[[Experiment, str], str | None],
    period: int,
    now: datetime,
    rules: ExperimentRules | None = None,
    *,
    read: bool = True,
) -> EventRecord:
    unit, variant = event.unit_id, event.variant
    if variant is not None and experiment.variant(variant) is None:
        allowed = ", ".join(v.key for v in experiment.variants)
        raise ValidationError(
            f"experiment '{experiment.key}' has no variant '{variant[:100]}' (variants: {allowed})",
            field="variant",
        )
    found = assigned.get(unit) if unit is not None else None
    stored = None
    if found is not None:
        stored, period = found
    if event.kind is EventKind.EXPOSURE:
        if unit is None:
            if variant is None:
                raise ValidationError(
                    "an exposure needs a unit_id or a variant (or both)", field="variant"
                )
            resolved = variant
        else:
            resolved = stored or variant or _hashed_variant(experiment, unit, hashed_variant)
            assigned[unit] = _ASSIGNMENT(StoredAssignment, (resolved, period))
        covariates, dimensions = event.covariates, event.dimensions
        return EventRecord(
            EventKind.EXPOSURE,
            experiment.id,
            resolved,
            unit,
            None,
            1.0,
            event.event_id,
            period,
            now,
            None if covariates is None else check_covariates(covariates),
            None if dimensions is None else check_unit_dimensions(dimensions),
            rules,
        )
    metric_key = event.metric or experiment.primary_metric.key
    metric = experiment.metric(metric_key)
    if metric is None:
        allowed = ", ".join(m.key for m in experiment.metrics)
        raise ValidationError(
            f"experiment '{experiment.key}' has no metric '{metric_key[:100]}' "
            f"(metrics: {allowed}); add it to the experiment's metrics first (PATCH, also "
            "while running)",
            field="metric",
        )
    if event.value is None and metric.kind is MetricKind.VALUE:
        raise ValidationError(
            f"metric '{metric.key}' is a value metric; the conversion needs a value", field="value"
        )
    value = 1.0 if event.value is None else check_number(event.value, field="value")
    if unit is not None and stored is None and read:
        raise UnitNotAssigned(
            f"unit '{unit}' was never assigned in experiment '{experiment.key}'; assign it or "
            "record its exposure first",
            field="unit_id",
        )
    if unit is None and variant is None:
        raise ValidationError("a conversion needs a unit_id or a variant", field="variant")
    # Without a read assignment (``read`` off) a unit's conversion ``needs_assignment``.
    return EventRecord(
        EventKind.CONVERSION,
        experiment.id,
        stored or variant or "",
        unit_id=unit,
        metric=metric.key,
        value=value,
        event_id=event.event_id,
        period=period,
        received_at=now,
        rules=rules,
        needs_assignment=unit is not None and stored is None,
    )


def check_hash_assigned(experiment: Experiment) -> None:
    """Refuse to assign units of a FeatureVisor companion feature by abpilot's hash: the
    official SDKs bucket them their own way, and a stored assignment that disagrees would count
    later exposures under a variation the user never saw."""
    if experiment.featurevisor_feature:
        raise Conflict(
            f"experiment '{experiment.key}' is a FeatureVisor feature: the FeatureVisor SDKs "
            "assign its units from the served datafile; record the variation they showed with "
            "POST /expose",
            field="experiment_id",
        )


def _hashed_variant(
    experiment: Experiment, unit: str, hashed_variant: Callable[[Experiment, str], str | None]
) -> str:
    """The variant of ``unit`` by the hash (``hashed_variant`` refuses a FeatureVisor
    feature)."""
    variant = hashed_variant(experiment, unit)
    if variant is None:
        raise ValidationError(
            f"unit '{unit}' is outside the traffic allocation of experiment '{experiment.key}'",
            field="unit_id",
        )
    return variant
