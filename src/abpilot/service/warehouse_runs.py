"""The two queries a warehouse refresh runs, after checking their sources: the experiment's
plan (``checked_plan``) and a bandit's daily totals (``record_daily_totals``, which records the
days whose totals changed as a post of each day would). Used by ``service/warehouse.py``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from abpilot.domain.experiment import Experiment
from abpilot.domain.inputs import DailyInput
from abpilot.domain.records import DailyRow
from abpilot.warehouse.engine import WarehouseError, check_types, describe, run
from abpilot.warehouse.plan import build_daily_plan, build_plan
from abpilot.warehouse.spec import Source, SourceKind, WarehouseOptions

SourceOf = Callable[[str, SourceKind, str], Source]  # (name, kind, field naming it) -> source
RecordDay = Callable[[Experiment, date, Sequence[DailyInput], Any], object]


def checked_plan(
    engine: Any, exp: Experiment, options: WarehouseOptions, source_of: SourceOf
) -> Any:
    """The experiment's plan, after checking its sources in the warehouse: the columns it
    reads present (an error names the first missing), the types of a sample usable."""
    assert options.assignment_source is not None
    sources = {
        options.assignment_source: source_of(
            options.assignment_source, SourceKind.ASSIGNMENT, "assignment_source"
        )
    }
    for i, spec in enumerate(options.metrics.values()):
        sources[spec.fact_source] = source_of(
            spec.fact_source, SourceKind.FACT, f"metrics[{i}].fact_source"
        )
    columns = {c.lower() for c in describe(engine, sources[options.assignment_source])}
    for dimension in options.dimensions:
        if dimension.lower() not in columns:
            raise WarehouseError(
                f"source '{options.assignment_source}' has no column '{dimension}' (a dimension "
                "of the experiment)",
                field=f"columns.{dimension}",
            )
    for metric, covariate in options.covariates.items():
        if covariate.lower() not in columns:
            raise WarehouseError(
                f"source '{options.assignment_source}' has no column '{covariate}' (the "
                f"covariate of metric '{metric}')",
                field=f"columns.{covariate}",
            )
    covariates = sorted(set(options.covariates.values()))
    if covariates:
        check_types(engine, sources[options.assignment_source], covariates)
    for spec in options.metrics.values():
        fact_columns = describe(engine, sources[spec.fact_source])
        if spec.column and spec.column.lower() not in {c.lower() for c in fact_columns}:
            raise WarehouseError(
                f"source '{spec.fact_source}' has no column '{spec.column}' (its query "
                f"returns: {', '.join(fact_columns)})",
                field=f"columns.{spec.column}",
            )
        check_types(engine, sources[spec.fact_source], [spec.column] if spec.column else [])
    return build_plan(
        experiment_key=exp.key,
        variants=[v.key for v in exp.variants],
        options=options,
        sources=sources,
    ).statement


def record_daily_totals(
    engine: Any,
    exp: Experiment,
    source: Source,
    *,
    timeout_seconds: float,
    stored: Sequence[DailyRow],
    record: RecordDay,
) -> tuple[int, tuple[str, ...], str]:
    """Read a bandit's daily totals from ``source`` and ``record`` each day whose totals differ
    from ``stored`` (the allocator checks it and keeps the payload, as for a post). The rows
    read, the days recorded and the SQL."""
    describe(engine, source, field="daily_source")
    check_types(engine, source, ["impressions", "clicks"])
    statement = build_daily_plan(
        experiment_key=exp.key, variants=[v.key for v in exp.variants], source=source
    )
    what = f"the daily totals of '{exp.key}'"
    found = run(engine, statement, timeout_seconds=timeout_seconds, what=what)
    by_day: dict[date, list[DailyInput]] = {}
    for day, variant, impressions, clicks in found:
        moment = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
        if isinstance(moment, datetime):
            moment = moment.date()
        by_day.setdefault(moment, []).append(
            DailyInput(str(variant), int(impressions or 0), int(clicks or 0))
        )
    before: dict[date, dict[str, tuple[int, int]]] = {}
    for row in stored:
        before.setdefault(row.day, {})[row.variant] = (row.impressions, row.clicks)
    recorded: list[str] = []
    for day, inputs in sorted(by_day.items()):
        if before.get(day) == {m.variant: (m.impressions, m.clicks) for m in inputs}:
            continue
        payload = {
            "date": day.isoformat(),
            "source": "warehouse",
            "metrics": [
                {"variant_name": m.variant, "impressions": m.impressions, "clicks": m.clicks}
                for m in inputs
            ],
        }
        record(exp, day, inputs, payload)
        recorded.append(day.isoformat())
    return len(found), tuple(recorded), str(statement.compile(engine))
