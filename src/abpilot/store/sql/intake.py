"""Counting events in SQL: a batch is a few bulk ``INSERT .. ON CONFLICT`` statements in one
transaction, in a fixed table order and with rows sorted by key, so concurrent transactions on
PostgreSQL take row locks in the same order. The batch's new assignments are inserted first and
the other units' assignments read back in the same transaction, so every event of a unit counts
under the assignment it has (whatever variant the event names), even one another worker stored
a moment ago.

Each statement is built once per dialect and executed with a list of parameter rows: SQLAlchemy
compiles it once and sends the rows as multi-row ``VALUES`` pages ("insertmanyvalues", with
``RETURNING`` on both SQLite and PostgreSQL). Building ``insert(t).values(rows)`` per call instead
compiled a new statement for every batch, which was most of the time of a batch on SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from abpilot.domain.counting import (
    CounterIncrements,
    EventKey,
    UnitKey,
    UnitMetricKey,
    UnitTotals,
    count_assignment,
    count_events,
    count_exposure,
)
from abpilot.domain.derived import covariate_cell
from abpilot.domain.records import METRIC_FIELDS, UnitMetricTotals
from abpilot.store.base import ApplyResult, AssignResult, EventRecord, StoredAssignment
from abpilot.store.event_ids import claim_time, window_start
from abpilot.store.sql.activity import later_time, stored_time
from abpilot.store.sql.common import adding_upsert, chunks, dialect_insert, guarded
from abpilot.store.sql.schema import (
    assignments,
    exposed_units,
    metric_counters,
    processed_events,
    unit_metrics,
    variant_counters,
)

VARIANT_COUNTS = ("assigned_units", "exposures", "unique_units")
METRIC_TOTALS = tuple(METRIC_FIELDS)  # the columns of metric_counters, named as in MetricTotals


@dataclass(frozen=True, slots=True)
class IntakeStatements:
    """The event path's statements for one dialect; each takes a list of parameter rows."""

    claim_events: sa.Executable
    insert_assignments: sa.Executable
    insert_exposed: sa.Executable
    add_unit_totals: sa.Executable
    bump_variants: sa.Executable
    bump_metrics: sa.Executable


@functools.cache
def intake_statements(dialect: str) -> IntakeStatements:
    insert = dialect_insert(dialect)

    unit_keys = ("experiment_id", "unit_id", "metric")
    return IntakeStatements(
        claim_events=insert(processed_events)
        .on_conflict_do_nothing()
        .returning(processed_events.c.experiment_id, processed_events.c.event_id),
        insert_assignments=insert(assignments)
        .on_conflict_do_nothing()
        .returning(
            assignments.c.experiment_id,
            assignments.c.unit_id,
            assignments.c.variant,
            assignments.c.period,
        ),
        insert_exposed=insert(exposed_units)
        .on_conflict_do_nothing()
        .returning(exposed_units.c.experiment_id, exposed_units.c.unit_id),
        add_unit_totals=adding_upsert(
            dialect, unit_metrics, unit_keys, ("count", "total")
        ).returning(*(unit_metrics.c[k] for k in (*unit_keys, "count", "total"))),
        bump_variants=adding_upsert(
            dialect,
            variant_counters,
            ("experiment_id", "variant", "period"),
            VARIANT_COUNTS,
            {"last_event_at": functools.partial(later_time, variant_counters)},
        ),
        bump_metrics=adding_upsert(
            dialect,
            metric_counters,
            ("experiment_id", "variant", "period", "metric"),
            METRIC_TOTALS,
            {"last_event_at": functools.partial(later_time, metric_counters)},
        ),
    )


class SqlIntake:
    """Mixed into ``SqlStore``: needs ``engine`` and ``_write``. The counting rules are
    ``abpilot.domain.counting``'s; this supplies their primitives in one transaction."""

    engine: sa.Engine
    event_id_retention_days: int
    _write: Callable[[], sa.Connection]

    @guarded
    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        with self._write() as conn, conn.begin():
            step = _SqlStep(conn, datetime.now(UTC))
            first = StoredAssignment(variant, period)
            stored, created = count_assignment(step, experiment_id, unit_id, first)
        return AssignResult(stored.variant, created, stored.period)

    @guarded
    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        """One transaction: the assignment (first one wins), then the exposure under it."""
        with self._write() as conn, conn.begin():
            step = _SqlStep(conn, claim_time([event]))
            stored, created, counted = count_exposure(step, event)
        return AssignResult(stored.variant, created, stored.period, exposed=counted)

    @guarded
    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        with self._write() as conn, conn.begin():
            counted = count_events(_SqlStep(conn, claim_time(events)), events)
        return ApplyResult(applied=counted.applied, duplicates=counted.duplicates)

    @guarded
    def prune_event_ids(self, *, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` ids claimed before the window, oldest first, in one short
        transaction (found through the index on ``processed_at``). PostgreSQL skips rows
        another transaction has locked rather than wait for it."""
        start = window_start(now, self.event_id_retention_days)
        if start is None:
            return 0
        p = processed_events.c
        old = sa.select(p.experiment_id, p.event_id).where(p.processed_at < start).limit(limit)
        if self.engine.dialect.name == "postgresql":
            old = old.with_for_update(skip_locked=True)
        delete = processed_events.delete().where(sa.tuple_(p.experiment_id, p.event_id).in_(old))
        with self._write() as conn, conn.begin():
            return int(conn.execute(delete).rowcount or 0)


class SqlUnitReads:
    """Mixed into ``SqlStore``: the per-unit read of issue 18."""

    engine: sa.Engine

    @guarded
    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        """Three single-table index scans joined in Python, in one transaction (a join in SQL
        ran as nested loops on fresh tables without statistics: quadratic in the units)."""
        u, a = unit_metrics.c, assignments.c

        def facts(name: str) -> sa.Select[Any]:
            return sa.select(u.unit_id, u.count, u.total).where(
                u.experiment_id == experiment_id, u.metric == name
            )

        found = UnitMetricTotals()
        with self.engine.connect() as conn, conn.begin():
            totals = conn.execute(facts(metric).where(u.count > 0)).all()
            if not totals:
                return found
            query = sa.select(a.unit_id, a.variant, a.period).where(
                a.experiment_id == experiment_id
            )
            assigned = {unit: (variant, int(p)) for unit, variant, p in conn.execute(query)}
            xs: dict[str, float] = {}
            if covariate is not None:
                rows = conn.execute(facts(covariate_cell(covariate)).where(u.count > 0))
                xs = {unit: float(x) for unit, _, x in rows}
        for unit, count, total in totals:
            cell = assigned.get(unit)
            if cell is not None:
                found.add(
                    unit, StoredAssignment(*cell), int(count), float(total), xs.get(unit, 0.0)
                )
        return found


class _SqlStep:
    """The counting primitives as bulk statements on one connection, inside the caller's
    transaction: each ``INSERT .. ON CONFLICT`` takes its rows' locks and tells (``RETURNING``)
    what was new, so nothing is read in Python and written back."""

    def __init__(self, conn: sa.Connection, claimed_at: datetime) -> None:
        self._conn, self._claimed_at = conn, claimed_at
        self._statements = intake_statements(conn.dialect.name)

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        at = self._claimed_at
        values = [{"experiment_id": e, "event_id": i, "processed_at": at} for e, i in ids]
        return {(r[0], r[1]) for r in _run(self._conn, self._statements.claim_events, values)}

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        now = datetime.now(UTC)
        values = [
            {"experiment_id": e, "unit_id": u, "variant": v, "period": p, "assigned_at": now}
            for (e, u), (v, p) in sorted(first.items())
        ]
        return {(r[0], r[1]) for r in _run(self._conn, self._statements.insert_assignments, values)}

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        """Rows are only ever inserted (or deleted with their experiment), so what this reads
        after the step's inserts stays true until the transaction ends."""
        a = assignments.c
        found: dict[UnitKey, StoredAssignment] = {}
        for chunk in chunks(units):
            query = sa.select(a.experiment_id, a.unit_id, a.variant, a.period).where(
                sa.tuple_(a.experiment_id, a.unit_id).in_(chunk)
            )
            for exp, unit, variant, period in self._conn.execute(query):
                found[(exp, unit)] = StoredAssignment(variant, int(period))
        return found

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        values = [{"experiment_id": e, "unit_id": u} for e, u in units]
        return {(r[0], r[1]) for r in _run(self._conn, self._statements.insert_exposed, values)}

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        values = [
            {"experiment_id": e, "unit_id": u, "metric": m, "count": d.count, "total": d.total}
            for (e, u, m), d in deltas.items()
        ]
        before: dict[UnitMetricKey, UnitTotals] = {}
        for e, u, m, count, total in _run(self._conn, self._statements.add_unit_totals, values):
            delta = deltas[(e, u, m)]
            before[(e, u, m)] = UnitTotals(int(count) - delta.count, float(total) - delta.total)
        return before

    def add_counters(self, increments: CounterIncrements) -> None:
        latest = increments.latest
        variants = [
            {
                "experiment_id": e,
                "variant": v,
                "period": p,
                **{n: getattr(c, n) for n in VARIANT_COUNTS},
                "last_event_at": stored_time(latest, e),
            }
            for (e, v, p), c in sorted(increments.variants.items())
        ]
        _run(self._conn, self._statements.bump_variants, variants)
        metrics = [
            {
                "experiment_id": e,
                "variant": v,
                "period": p,
                "metric": m,
                **{n: getattr(t, n) for n in METRIC_TOTALS},
                "last_event_at": stored_time(latest, e),
            }
            for (e, v, p, m), t in sorted(increments.metrics.items())
        ]
        _run(self._conn, self._statements.bump_metrics, metrics)


def _run(conn: sa.Connection, statement: sa.Executable, values: list[dict[str, Any]]) -> list[Any]:
    """Execute ``statement`` for every row of ``values`` (nothing for none); the rows it
    returned, if it has ``RETURNING``."""
    if not values:
        return []
    result = conn.execute(statement, values)
    return list(result) if result.returns_rows else []
