"""The per-unit read of issue 18 in SQL: every converting unit's total of one metric, with its
variant, period and covariate (what a percentile cap is computed from at analysis time).

Three single-table index scans in one transaction (the metric's totals, the assignments, the
covariate facts), joined in Python by unit: a join in SQL is at the planner's mercy on fresh
tables without statistics (it ran as nested loops, quadratic in the units, on PostgreSQL). The
rows are fetched from the driver's cursor in one ``fetchall`` and the columns built by list
comprehensions: the earlier loop over SQLAlchemy rows, a dict per read and a record per unit
took 9 to 13 times a raw read of the same rows (``benchmarks/unit_totals.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from abpilot.domain.derived import covariate_cell
from abpilot.domain.records import UnitMetricTotals
from abpilot.store.sql.common import guarded
from abpilot.store.sql.schema import assignments, unit_metrics


def _fetch(conn: sa.Connection, query: sa.Select[Any]) -> Sequence[Any]:
    """Every row of ``query`` as the driver's tuples (no SQLAlchemy row per row)."""
    result = conn.execute(query)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


class SqlUnitReads:
    """Mixed into ``SqlStore``: the per-unit read of issue 18."""

    engine: sa.Engine

    @guarded
    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        u, a = unit_metrics.c, assignments.c

        def facts(name: str) -> sa.Select[Any]:
            return sa.select(u.unit_id, u.count, u.total).where(
                u.experiment_id == experiment_id, u.metric == name, u.count > 0
            )

        with self.engine.connect() as conn, conn.begin():
            totals = _fetch(conn, facts(metric))
            if not totals:
                return UnitMetricTotals()
            query = sa.select(a.unit_id, a.variant, a.period).where(
                a.experiment_id == experiment_id
            )
            assigned = {row[0]: row for row in _fetch(conn, query)}
            xs: dict[str, float] = {}
            if covariate is not None:
                xs = {row[0]: row[2] for row in _fetch(conn, facts(covariate_cell(covariate)))}
        # A unit's totals are written with its assignment; one without is skipped, as elsewhere.
        rows = [(t, assigned[t[0]]) for t in totals if t[0] in assigned]
        return UnitMetricTotals(
            units=[t[0] for t, _ in rows],
            variants=[cell[1] for _, cell in rows],
            periods=[int(cell[2]) for _, cell in rows],
            counts=[int(t[1]) for t, _ in rows],
            totals=[float(t[2]) for t, _ in rows],
            covariates=[float(xs.get(t[0], 0.0)) for t, _ in rows],
        )
