"""Counting events in SQL: a batch is a few set-based ``INSERT .. ON CONFLICT`` statements (one
per table, ``abpilot.store.sql.bulk``) in one transaction, in a fixed table order and with rows
sorted by key, so concurrent transactions on PostgreSQL take row locks in the same order. The
batch's new assignments are inserted first and the other units' assignments read back in the
same transaction, so every event of a unit counts under the assignment it has (whatever variant
the event names), even one another worker stored a moment ago.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
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
    latest_received,
    plain_exposure,
)
from abpilot.domain.errors import DefinitionChanged
from abpilot.domain.records import METRIC_FIELDS
from abpilot.store.base import ApplyResult, AssignResult, EventRecord, StoredAssignment
from abpilot.store.event_ids import claim_time, window_start
from abpilot.store.sql.activity import stored_time
from abpilot.store.sql.bulk import (
    adding,
    driver_rows,
    new_only,
    pipelined,
    read_later,
    select_units,
    texts_array,
    time_value,
)
from abpilot.store.sql.common import guarded, one_read
from abpilot.store.sql.schema import (
    processed_events,
)

VARIANT_COUNTS = ("assigned_units", "exposures", "unique_units")
METRIC_TOTALS = tuple(METRIC_FIELDS)  # the columns of metric_counters, named as in MetricTotals


TEXT, INT, BIG, FLOAT, TIME = "text", "integer", "bigint", "float8", "timestamptz"
VARIANT_KEY = ("experiment_id", "variant", "period")
UNIT_METRIC_KEY = ("experiment_id", "unit_id", "metric")
CLAIM_EVENTS = new_only(
    "processed_events",
    ("experiment_id", "event_id", "processed_at"),
    (TEXT, TEXT, TIME),
    "RETURNING experiment_id, event_id",
)
INSERT_ASSIGNMENTS = new_only(
    "assignments",
    ("experiment_id", "unit_id", "variant", "period", "assigned_at"),
    (TEXT, TEXT, TEXT, INT, TIME),
    "RETURNING experiment_id, unit_id",
)
INSERT_EXPOSED = new_only(
    "exposed_units", ("experiment_id", "unit_id"), (TEXT, TEXT), "RETURNING experiment_id, unit_id"
)
ADD_UNIT_TOTALS = adding(
    "unit_metrics",
    (*UNIT_METRIC_KEY, "count", "total"),
    (TEXT, TEXT, TEXT, BIG, FLOAT),
    UNIT_METRIC_KEY,
    ("count", "total"),
    "RETURNING experiment_id, unit_id, metric, count, total",
)
BUMP_VARIANTS = adding(
    "variant_counters",
    (*VARIANT_KEY, *VARIANT_COUNTS, "last_event_at"),
    (TEXT, TEXT, INT, BIG, BIG, BIG, TIME),
    VARIANT_KEY,
    VARIANT_COUNTS,
)
BUMP_METRICS = adding(
    "metric_counters",
    (*VARIANT_KEY, "metric", *METRIC_TOTALS, "last_event_at"),
    (TEXT, TEXT, INT, TEXT, *(BIG if k is int else FLOAT for k in METRIC_FIELDS.values()), TIME),
    (*VARIANT_KEY, "metric"),
    METRIC_TOTALS,
)


class SqlIntake:
    """Mixed into ``SqlStore``: needs ``engine`` and ``_write``. The counting rules are
    ``abpilot.domain.counting``'s; this supplies their primitives in one transaction."""

    engine: sa.Engine
    event_id_retention_days: int
    _write: Callable[[], AbstractContextManager[sa.Connection]]

    @guarded
    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        first = StoredAssignment(variant, period)
        if self.engine.dialect.name == "postgresql":
            return _assign_in_one_statement(self.engine, experiment_id, unit_id, first)
        with self._write() as conn, conn.begin():
            step = _SqlStep(conn, datetime.now(UTC))
            stored, created = count_assignment(step, experiment_id, unit_id, first)
        return AssignResult(stored.variant, created, stored.period)

    @guarded
    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        """One transaction: the assignment (first one wins), then the exposure under it."""
        with self._write() as conn, conn.begin(), pipelined(conn):
            step = _SqlStep(conn, claim_time([event]))
            stored, created, counted = count_exposure(step, event)
        return AssignResult(stored.variant, created, stored.period, exposed=counted)

    @guarded
    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        with self._write() as conn, conn.begin(), pipelined(conn):
            counted = count_events(_SqlStep(conn, claim_time(events)), events)
        return ApplyResult(applied=counted.applied, duplicates=counted.duplicates)

    @guarded
    def apply_current_events(
        self, events: Sequence[EventRecord], versions: Mapping[str, int]
    ) -> ApplyResult:
        """``apply_events`` with the definitions' versions checked in the same transaction (one
        indexed read, where the default read and decoded each whole definition first, in a
        transaction of its own). On PostgreSQL the read is sent with BEGIN and the step's first
        statement (``pipelined``: no round trip of its own), and a definition committed while
        the transaction runs (a few statements' time) is not seen, as with any read under READ
        COMMITTED: locking the definition row (FOR SHARE) would write a row lock on every
        batch, and the definition changes rarely. SQLite's write lock, held from BEGIN
        IMMEDIATE, makes the check exact."""
        if self.engine.dialect.name == "postgresql" and plain_exposure(events, versions):
            found = _expose_in_one_statement(self.engine, events[0], versions)
            if found is not None:
                return found
        with self._write() as conn, conn.begin(), pipelined(conn):
            stored = _read_versions(conn, versions)
            counted = count_events(_SqlStep(conn, claim_time(events)), events)
            _check_versions(stored(), versions)
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


# PostgreSQL: ``count_assignment`` (rule 2 of ``abpilot.domain.counting``: the first
# assignment wins, and each one stored adds one to its variant's ``assigned_units``) as ONE
# statement, so an assignment is one round trip in autocommit where the transaction of two
# statements took four (BEGIN, the insert, the counter, COMMIT). Its two parts are the
# counting step's own statements (``INSERT_ASSIGNMENTS``, ``BUMP_VARIANTS``), joined by a
# data-modifying CTE: the counter grows only for the row the insert stored, atomically.
ASSIGN_ONE = (
    "WITH new AS ("
    "INSERT INTO assignments (experiment_id, unit_id, variant, period, assigned_at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING experiment_id, variant, period"
    "), counted AS ("
    f"INSERT INTO variant_counters ({', '.join(BUMP_VARIANTS.columns)}) "
    "SELECT experiment_id, variant, period, 1, 0, 0, NULL::timestamptz FROM new "
    f"{BUMP_VARIANTS.tail}"
    ") SELECT variant, period FROM new"
)
READ_ONE = "SELECT variant, period FROM assignments WHERE experiment_id = %s AND unit_id = %s"


def _assign_in_one_statement(
    engine: sa.Engine, experiment_id: str, unit_id: str, first: StoredAssignment
) -> AssignResult:
    """``assign`` on PostgreSQL (``ASSIGN_ONE``); a unit assigned before is then read (the
    insert waited for a concurrent one to commit, so the read finds its row)."""
    at = datetime.now(UTC)
    with one_read(engine) as conn:
        values = (experiment_id, unit_id, first.variant, first.period, at)
        for variant, period in driver_rows(conn, ASSIGN_ONE, values):
            return AssignResult(variant, True, int(period))
        for variant, period in driver_rows(conn, READ_ONE, (experiment_id, unit_id)):
            return AssignResult(variant, False, int(period))
    # The unit's row went with its experiment, deleted meanwhile.
    return AssignResult(first.variant, False, first.period)


# PostgreSQL: ``count_events`` for ONE plain exposure (a unit's exposure, no issue-18 rules:
# no covariates, dimensions or derived counters) as ONE statement in autocommit, one round trip
# where the transaction took three, and far fewer thread hand-offs in a busy worker. It applies
# the rules ``abpilot.domain.counting`` states for this case, with the definition's version
# checked first (``apply_current_events``):
#   1. the event id, if any, is claimed, else the exposure is a duplicate and nothing changes;
#   2. the unit's assignment is stored if it has none (``assigned_units`` + 1);
#   3. the exposure counts under the assignment the unit has, whatever the event names;
#   4. ``exposures`` + 1, and ``unique_units`` + 1 if the unit was not exposed before;
#   7. ``last_event_at`` keeps the later time.
# Each part is the counting step's own statement (the same tables, keys and ``ON CONFLICT``
# clauses as ``_SqlStep``), in the step's table order, joined by data-modifying CTEs. The
# general path and this one are checked against each other (tests/store/test_sql_expose_one.py).
# The one case a single statement cannot answer: the unit's first assignment committed by
# another transaction while this one ran. The insert then waits for it and skips, but the
# statement's snapshot, taken before, does not show the row it must count under. The statement
# then fails on purpose (``RACE``, a cast error, so that all of it rolls back) and the exposure
# goes through the general path, whose later statement sees the row.
RACE = "abpilot: the unit was assigned concurrently"
EXPOSE_ONE = (
    "WITH current AS ("
    "SELECT 1 FROM experiments WHERE id = %(experiment)s AND version = %(version)s"
    "), claim AS ("
    "INSERT INTO processed_events (experiment_id, event_id, processed_at) "
    "SELECT %(experiment)s, %(event)s::text, %(claimed)s::timestamptz FROM current "
    "WHERE %(event)s::text IS NOT NULL ON CONFLICT DO NOTHING RETURNING 1"
    "), go AS ("
    "SELECT 1 FROM current WHERE %(event)s::text IS NULL OR EXISTS (SELECT 1 FROM claim)"
    "), new AS ("
    "INSERT INTO assignments (experiment_id, unit_id, variant, period, assigned_at) "
    "SELECT %(experiment)s, %(unit)s, %(variant)s, %(period)s::integer, %(now)s::timestamptz "
    "FROM go ON CONFLICT DO NOTHING RETURNING variant, period"
    "), stored AS ("
    "SELECT variant, period FROM new UNION ALL "
    "SELECT variant, period FROM assignments "
    "WHERE experiment_id = %(experiment)s AND unit_id = %(unit)s "
    "AND EXISTS (SELECT 1 FROM go) AND NOT EXISTS (SELECT 1 FROM new)"
    "), exposed AS ("
    "INSERT INTO exposed_units (experiment_id, unit_id) SELECT %(experiment)s, %(unit)s FROM go "
    "ON CONFLICT DO NOTHING RETURNING 1"
    "), counted AS ("
    f"INSERT INTO variant_counters ({', '.join(BUMP_VARIANTS.columns)}) "
    "SELECT %(experiment)s, variant, period, (SELECT count(*) FROM new), 1, "
    "(SELECT count(*) FROM exposed), %(at)s::timestamptz FROM stored "
    f"{BUMP_VARIANTS.tail}"
    ") SELECT n.current, n.go, "
    f"CASE WHEN n.go > 0 AND n.stored = 0 THEN ('{RACE} ' || n.go)::integer END FROM ("
    "SELECT (SELECT count(*) FROM current) AS current, (SELECT count(*) FROM go) AS go, "
    "(SELECT count(*) FROM stored) AS stored) AS n"
)


def _expose_in_one_statement(
    engine: sa.Engine, event: EventRecord, versions: Mapping[str, int]
) -> ApplyResult | None:
    """``apply_current_events`` of one plain exposure on PostgreSQL (``EXPOSE_ONE``); None
    when the unit's assignment was stored concurrently (nothing was written: count it through
    the general path)."""
    experiment_id = event.experiment_id
    values = {
        "experiment": experiment_id,
        "version": versions[experiment_id],
        "event": event.event_id,
        "claimed": claim_time([event]),
        "unit": event.unit_id,
        "variant": event.variant,
        "period": event.period,
        "now": datetime.now(UTC),
        "at": stored_time(latest_received([event]), experiment_id),
    }
    try:
        with one_read(engine) as conn:
            ((current, go, _),) = driver_rows(conn, EXPOSE_ONE, values)
    except sa.exc.DataError as error:
        if RACE in str(error.orig):
            return None
        raise
    if not current:
        raise DefinitionChanged(experiment_id)
    return ApplyResult(applied=1, duplicates=0) if go else ApplyResult(applied=0, duplicates=1)


class _SqlStep:
    """The counting primitives as set-based statements on one connection, inside the caller's
    transaction (``abpilot.store.sql.bulk``): each ``INSERT .. ON CONFLICT`` takes its rows'
    locks and tells (``RETURNING``) what was new, so nothing is read in Python and written
    back; each is one statement for the whole batch."""

    def __init__(self, conn: sa.Connection, claimed_at: datetime) -> None:
        self._conn = conn
        self._time = time_value(conn.dialect)
        self._claimed_at = self._time(claimed_at)

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        at = self._claimed_at
        rows = CLAIM_EVENTS.run(self._conn, [(e, i, at) for e, i in ids])
        return {(r[0], r[1]) for r in rows}

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        now = self._time(datetime.now(UTC))
        values = [(e, u, v, p, now) for (e, u), (v, p) in sorted(first.items())]
        return {(r[0], r[1]) for r in INSERT_ASSIGNMENTS.run(self._conn, values)}

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        """Rows are only ever inserted (or deleted with their experiment), so what this reads
        after the step's inserts stays true until the transaction ends."""
        found: dict[UnitKey, StoredAssignment] = {}
        for experiment_id, unit_ids in _by_experiment(units).items():
            columns = "unit_id, variant, period"
            for unit, variant, period in select_units(
                self._conn, columns, "assignments", experiment_id, unit_ids
            ):
                found[(experiment_id, unit)] = StoredAssignment(variant, int(period))
        return found

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        return {(r[0], r[1]) for r in INSERT_EXPOSED.run(self._conn, units)}

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        values = [(e, u, m, d.count, d.total) for (e, u, m), d in deltas.items()]
        before: dict[UnitMetricKey, UnitTotals] = {}
        for e, u, m, count, total in ADD_UNIT_TOTALS.run(self._conn, values):
            delta = deltas[(e, u, m)]
            before[(e, u, m)] = UnitTotals(int(count) - delta.count, float(total) - delta.total)
        return before

    def add_counters(self, increments: CounterIncrements) -> None:
        times = {e: self._time(stored_time(increments.latest, e)) for e in increments.latest}
        variants = [
            (e, v, p, *(getattr(c, n) for n in VARIANT_COUNTS), times.get(e))
            for (e, v, p), c in sorted(increments.variants.items())
        ]
        BUMP_VARIANTS.run(self._conn, variants)
        metrics = [
            (e, v, p, m, *(getattr(t, n) for n in METRIC_TOTALS), times.get(e))
            for (e, v, p, m), t in sorted(increments.metrics.items())
        ]
        BUMP_METRICS.run(self._conn, metrics)


def _read_versions(conn: sa.Connection, versions: Mapping[str, int]) -> Callable[[], list[Any]]:
    """The stored (id, version) of the experiments of ``versions``, read later (``read_later``)."""
    ids = sorted(versions)
    if not ids:
        return list
    if conn.dialect.name == "postgresql":
        sql = "SELECT id, version FROM experiments WHERE id = ANY(%s::text[])"
        return read_later(conn, sql, (texts_array(ids),))
    marks = ", ".join("?" * len(ids))
    return read_later(
        conn, f"SELECT id, version FROM experiments WHERE id IN ({marks})", tuple(ids)
    )


def _check_versions(rows: list[Any], versions: Mapping[str, int]) -> None:
    """Raise ``DefinitionChanged`` naming an experiment whose stored definition (``rows``) is
    not at the version given (or is gone)."""
    stored = {row[0]: int(row[1]) for row in rows}
    for experiment_id in sorted(versions):
        if stored.get(experiment_id) != versions[experiment_id]:
            raise DefinitionChanged(experiment_id)


def _by_experiment(units: Sequence[UnitKey]) -> dict[str, list[str]]:
    """Unit ids grouped by experiment, in the order given."""
    grouped: dict[str, list[str]] = {}
    for experiment_id, unit_id in units:
        grouped.setdefault(experiment_id, []).append(unit_id)
    return grouped
