"""The checks of an export document on import, all made before anything is written: its shape
(``transfer_schema``), then every reference to a variant, period, decision or day inside one
experiment's recorded state. Each failure is a ``ValidationError`` naming the place in the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from abpilot.domain.errors import ValidationError
from abpilot.domain.experiment import ExperimentType
from abpilot.domain.text import json_problem
from abpilot.service.interleaving import IMPRESSION
from abpilot.service.snapshot_documents import NAMESPACE_PREFIX
from abpilot.service.transfer_schema import FORMAT, SCHEMA_VERSION, ExperimentEntry, ExportFile
from abpilot.store.codec import as_utc
from abpilot.store.state import ExperimentState


def parse(document: Mapping[str, Any]) -> ExportFile:
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


def check_unique(states: Sequence[ExperimentState]) -> None:
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


def check_references(entry: ExperimentEntry, state: ExperimentState, where: str) -> None:
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
    for i, snapshot in enumerate(entry.snapshots):
        taken = as_utc(snapshot.taken_at).date()
        check(
            taken == snapshot.date,
            f"snapshots[{i}].taken_at",
            f"a snapshot of {snapshot.date} is taken on that day (UTC), not on {taken}",
        )
        for j, v in enumerate(snapshot.variants):
            field = f"snapshots[{i}].variants[{j}].key"
            check(v.key in variants, field, f"unknown variant '{v.key}'")
        repeated = first_repeat([v.key for v in snapshot.variants])
        check(repeated is None, f"snapshots[{i}].variants", f"{repeated!r:.120} appears twice")
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
        ("snapshots", [s.date for s in entry.snapshots]),
    ):
        repeated = first_repeat(items)
        check(repeated is None, field, f"{repeated!r:.120} appears twice")
    assigned = state.units.assignments
    for unit in entry.exposed_units:
        check(unit in assigned, "exposed_units", f"unit '{unit[:100]}' is exposed, not assigned")


def first_repeat(items: Sequence[object]) -> object | None:
    seen: set[object] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def check_documents(parsed: ExportFile) -> None:
    """Shared documents only: an experiment's snapshots travel with it (checked there)."""
    for i, d in enumerate(parsed.documents):
        if d.namespace.startswith(NAMESPACE_PREFIX):
            raise ValidationError(
                f"documents[{i}].namespace: '{d.namespace:.120}' holds an experiment's daily "
                "snapshots, which an export carries in experiments[].snapshots",
                field=f"documents[{i}].namespace",
            )
