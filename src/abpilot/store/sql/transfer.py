"""Export and import for the SQL store: read the per-unit tables, restore a whole experiment in
one transaction (see ``abpilot.store.state``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from abpilot.domain.experiment import Experiment
from abpilot.store.base import StoredAssignment, experiment_taken
from abpilot.store.codec import as_utc
from abpilot.store.counters import stored_cells
from abpilot.store.sql.common import chunks, guarded
from abpilot.store.sql.contextual import _context_json
from abpilot.store.sql.schema import (
    allocations,
    assignments,
    bandit_states,
    daily_metrics,
    decision_feedback,
    decisions,
    experiments,
    exposed_units,
    metric_counters,
    processed_events,
    raw_metrics,
    unit_metrics,
    variant_counters,
)
from abpilot.store.state import ExperimentState, UnitState


class SqlTransfer:
    """Mixed into ``SqlStore``: needs ``engine``, ``_write`` and ``_insert_definition``."""

    engine: sa.Engine
    _write: Callable[[], AbstractContextManager[sa.Connection]]
    _insert_definition: Callable[[sa.Connection, Experiment], None]

    @guarded
    def get_unit_state(self, experiment_id: str) -> UnitState:
        def rows(table: sa.Table, *columns: str) -> Iterable[Any]:
            query = sa.select(*(table.c[c] for c in columns))
            return conn.execute(query.where(table.c.experiment_id == experiment_id))

        with self.engine.connect() as conn, conn.begin():
            return UnitState(
                assignments={
                    u: StoredAssignment(v, int(p))
                    for u, v, p in rows(assignments, "unit_id", "variant", "period")
                },
                exposed=frozenset(u for (u,) in rows(exposed_units, "unit_id")),
                totals={
                    (u, m): (int(c), float(t))
                    for u, m, c, t in rows(unit_metrics, "unit_id", "metric", "count", "total")
                },
                event_ids={
                    i: as_utc(at) for i, at in rows(processed_events, "event_id", "processed_at")
                },
            )

    @guarded
    def restore_experiment(self, state: ExperimentState) -> None:
        exp = state.experiment.id
        now = datetime.now(UTC)
        # Inserted by someone else after the checks: DuplicateKey (translate_conflicts).
        with self._write() as conn, conn.begin():
            taken = conn.execute(sa.select(experiments.c.id).where(experiments.c.id == exp))
            if taken.first() is not None:
                raise experiment_taken("id", exp)
            self._insert_definition(conn, state.experiment)
            for table, values in _rows(state, now):
                for chunk in chunks(values):
                    conn.execute(table.insert(), [{"experiment_id": exp, **v} for v in chunk])


def _rows(state: ExperimentState, now: datetime) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
    """The rows of every per-experiment table (without ``experiment_id``)."""
    units = state.units
    latest = None if state.last_event_at is None else as_utc(state.last_event_at)
    counter_rows, metric_rows = [], []
    for period, by_variant in state.counters.items():
        for variant, c in by_variant.items():
            cell = {"variant": variant, "period": period, "last_event_at": latest}
            if c.assigned_units or c.exposures or c.unique_units:
                counter_rows.append(
                    {
                        **cell,
                        "assigned_units": c.assigned_units,
                        "exposures": c.exposures,
                        "unique_units": c.unique_units,
                    }
                )
            for metric, t in stored_cells(c).items():
                metric_rows.append(
                    {
                        **cell,
                        "metric": metric,
                        "count": t.count,
                        "units": t.units,
                        "sum": t.sum,
                        "sum_squares": t.sum_squares,
                    }
                )
    return [
        (
            assignments,
            [
                {"unit_id": u, "variant": a.variant, "period": a.period, "assigned_at": now}
                for u, a in units.assignments.items()
            ],
        ),
        (exposed_units, [{"unit_id": u} for u in units.exposed]),
        (
            unit_metrics,
            [
                {"unit_id": u, "metric": m, "count": c, "total": t}
                for (u, m), (c, t) in units.totals.items()
            ],
        ),
        (
            processed_events,
            [{"event_id": i, "processed_at": as_utc(at)} for i, at in units.event_ids.items()],
        ),
        (variant_counters, counter_rows),
        (metric_counters, metric_rows),
        (
            daily_metrics,
            [
                {
                    "variant": r.variant,
                    "day": r.day,
                    "impressions": r.impressions,
                    "clicks": r.clicks,
                    "updated_at": now,
                }
                for r in state.daily
            ],
        ),
        (
            raw_metrics,
            [
                {"day": r.day, "payload": r.payload, "received_at": as_utc(r.received_at)}
                for r in state.raw
            ],
        ),
        (
            allocations,
            [
                {
                    "period": period,
                    "computed_at": as_utc(r.computed_at),
                    "weights": dict(r.weights),
                    "method": r.method,
                    "seed": r.seed,
                    "source": r.source,
                    "details": dict(r.details),
                }
                for period, r in enumerate(state.allocations, start=1)
            ],
        ),
        (
            decisions,
            [
                {
                    "id": d.id,
                    "unit_id": d.unit_id,
                    "context_key": d.context_key,
                    "context": _context_json(d.context),
                    "arm": d.arm,
                    "propensity": d.propensity,
                    "policy": d.policy,
                    "method": d.method,
                    "decided_at": as_utc(d.decided_at),
                    "successes": d.successes,
                    "failures": d.failures,
                    "rating": d.rating,
                }
                for d in state.decisions
            ],
        ),
        (
            decision_feedback,
            [
                {"decision_id": d, "event": e, "outcome": "restored", "received_at": now}
                for d, e in state.feedback
            ],
        ),
        (
            bandit_states,
            [
                {
                    "context_key": a.context_key,
                    "arm": a.arm,
                    "pulls": a.pulls,
                    "successes": a.successes,
                    "failures": a.failures,
                    "updated_at": now if a.updated_at is None else as_utc(a.updated_at),
                }
                for a in state.arm_states
            ],
        ),
    ]
