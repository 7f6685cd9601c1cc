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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from abpilot.store.base import ApplyResult, EventRecord, MetricTotals, StoredAssignment
from abpilot.store.plan import (
    UnitKey,
    UnitMetricKey,
    first_exposures,
    latest_received,
    metric_increments,
    plan_events,
    split_duplicates,
    to_assignments,
    unit_keys,
)
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
METRIC_TOTALS = ("count", "units", "sum", "sum_squares")


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
    """Mixed into ``SqlStore``: needs ``engine`` and ``_write``."""

    engine: sa.Engine
    _write: Callable[[], sa.Connection]

    @property
    def _statements(self) -> IntakeStatements:
        return intake_statements(self.engine.dialect.name)

    @guarded
    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        kept, duplicates = split_duplicates(events)
        if not kept:
            return ApplyResult(applied=0, duplicates=duplicates)
        with self._write() as conn, conn.begin():
            fresh = self._claim_event_ids(conn, kept)
            duplicates += len(kept) - len(fresh)
            bumps: dict[tuple[str, str, int], dict[str, int]] = {}

            def bump(key: tuple[str, str, int], name: str) -> None:
                counts = bumps.setdefault(key, {})
                counts[name] = counts.get(name, 0) + 1

            # Units first: store the batch's first exposures as assignments where there are
            # none (first one wins), then count every event of a unit under the assignment the
            # unit has now, read in this transaction, whatever variant the event names.
            first = first_exposures(fresh)
            candidates = [(e, u, a.variant, a.period) for (e, u), a in first.items()]
            assigned: dict[UnitKey, StoredAssignment] = {}
            for exp, unit, variant, period in self._insert_assignments(conn, candidates):
                bump((exp, variant, period), "assigned_units")
                assigned[(exp, unit)] = StoredAssignment(variant, period)
            assigned.update(self._read_assignments(conn, unit_keys(fresh) - assigned.keys()))
            plan = plan_events(to_assignments(fresh, assigned))
            for key, n in plan.exposures.items():
                bumps.setdefault(key, {})["exposures"] = n
            units = [(e, u, v, p) for (e, u), (v, p) in plan.exposed_units.items()]
            for exp, _unit, variant, period in self._insert_exposed(conn, units):
                bump((exp, variant, period), "unique_units")
            latest = latest_received(fresh)
            self._bump_variants(conn, bumps, latest)
            after = self._add_unit_totals(conn, plan.unit_conversions)
            self._bump_metrics(conn, metric_increments(plan, after), latest)
        return ApplyResult(applied=len(fresh), duplicates=duplicates)

    def _claim_event_ids(
        self, conn: sa.Connection, events: Sequence[EventRecord]
    ) -> list[EventRecord]:
        """Record the batch's event ids; return the events whose id was new (or that have none)."""
        now = datetime.now(UTC)
        rows = sorted({(e.experiment_id, e.event_id) for e in events if e.event_id is not None})
        values = [{"experiment_id": e, "event_id": i, "processed_at": now} for e, i in rows]
        claimed = {(r[0], r[1]) for r in _run(conn, self._statements.claim_events, values)}
        return [e for e in events if e.event_id is None or (e.experiment_id, e.event_id) in claimed]

    def _insert_assignments(
        self, conn: sa.Connection, rows: Iterable[tuple[str, str, str, int]]
    ) -> list[tuple[str, str, str, int]]:
        """Insert assignments that do not exist yet; return those created as
        (experiment, unit, variant, period)."""
        now = datetime.now(UTC)
        values = [
            {"experiment_id": e, "unit_id": u, "variant": v, "period": p, "assigned_at": now}
            for e, u, v, p in sorted(rows)
        ]
        created = _run(conn, self._statements.insert_assignments, values)
        return [(r[0], r[1], r[2], int(r[3])) for r in created]

    def _read_assignments(
        self, conn: sa.Connection, units: Iterable[UnitKey]
    ) -> dict[UnitKey, StoredAssignment]:
        """The stored assignments of these (experiment, unit) pairs that have one. Rows are only
        ever inserted (or deleted with their experiment), so what this reads after the batch's
        inserts stays true until the transaction ends."""
        a = assignments.c
        found: dict[UnitKey, StoredAssignment] = {}
        for chunk in chunks(sorted(units)):
            query = sa.select(a.experiment_id, a.unit_id, a.variant, a.period).where(
                sa.tuple_(a.experiment_id, a.unit_id).in_(chunk)
            )
            for exp, unit, variant, period in conn.execute(query):
                found[(exp, unit)] = StoredAssignment(variant, int(period))
        return found

    def _insert_exposed(
        self, conn: sa.Connection, units: Sequence[tuple[str, str, str, int]]
    ) -> list[tuple[str, str, str, int]]:
        """Mark units exposed; return those exposed for the first time."""
        of = {(e, u): (v, p) for e, u, v, p in units}
        values = [{"experiment_id": e, "unit_id": u} for e, u in sorted(of)]
        created = _run(conn, self._statements.insert_exposed, values)
        return [(e, u, *of[(e, u)]) for e, u in created]

    def _add_unit_totals(
        self, conn: sa.Connection, deltas: dict[UnitMetricKey, Any]
    ) -> dict[UnitMetricKey, tuple[int, float]]:
        values = [
            {"experiment_id": e, "unit_id": u, "metric": m, "count": d.count, "total": d.total}
            for (e, u, m), d in sorted(deltas.items())
        ]
        rows = _run(conn, self._statements.add_unit_totals, values)
        return {(e, u, m): (int(count), float(total)) for e, u, m, count, total in rows}

    def _bump_variants(
        self,
        conn: sa.Connection,
        bumps: dict[tuple[str, str, int], dict[str, int]],
        latest: Mapping[str, datetime] = {},
    ) -> None:
        values = [
            {
                "experiment_id": e,
                "variant": v,
                "period": p,
                **{n: c.get(n, 0) for n in VARIANT_COUNTS},
                "last_event_at": stored_time(latest, e),
            }
            for (e, v, p), c in sorted(bumps.items())
        ]
        _run(conn, self._statements.bump_variants, values)

    def _bump_metrics(
        self,
        conn: sa.Connection,
        increments: dict[tuple[str, str, int, str], MetricTotals],
        latest: Mapping[str, datetime],
    ) -> None:
        values = [
            {
                "experiment_id": e,
                "variant": v,
                "period": p,
                "metric": m,
                **{n: getattr(t, n) for n in METRIC_TOTALS},
                "last_event_at": stored_time(latest, e),
            }
            for (e, v, p, m), t in sorted(increments.items())
        ]
        _run(conn, self._statements.bump_metrics, values)


def _run(conn: sa.Connection, statement: sa.Executable, values: list[dict[str, Any]]) -> list[Any]:
    """Execute ``statement`` for every row of ``values`` (nothing for none); the rows it
    returned, if it has ``RETURNING``."""
    if not values:
        return []
    result = conn.execute(statement, values)
    return list(result) if result.returns_rows else []
