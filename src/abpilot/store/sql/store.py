"""The SQL store: one transaction per operation, counters by ``INSERT .. ON CONFLICT DO UPDATE``
(the event path is in ``abpilot.store.sql.intake``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from abpilot.domain.errors import (
    ConcurrentModification,
    ExperimentNotFound,
    StoreUnavailable,
)
from abpilot.domain.experiment import Experiment, ExperimentStatus, ExperimentType
from abpilot.domain.records import METRIC_FIELDS
from abpilot.store.base import (
    MetricTotals,
    StoredAssignment,
    VariantCounters,
    experiment_taken,
)
from abpilot.store.codec import (
    as_utc,
    metrics_from_list,
    metrics_to_list,
    variant_from_dict,
    variant_to_dict,
)
from abpilot.store.counters import group_counters, sum_periods
from abpilot.store.defaults import StoreDefaults
from abpilot.store.event_ids import check_retention
from abpilot.store.sql import engine as sql_engine
from abpilot.store.sql.activity import SqlActivity
from abpilot.store.sql.bulk import select_units
from abpilot.store.sql.common import chunks, guarded, one_read, translate_conflicts
from abpilot.store.sql.contextual import SqlContextual
from abpilot.store.sql.documents import SqlDocuments
from abpilot.store.sql.history import SqlHistory
from abpilot.store.sql.intake import SqlIntake
from abpilot.store.sql.schema import (
    PER_EXPERIMENT_TABLES,
    experiments,
    metric_counters,
    variant_counters,
    variants,
)
from abpilot.store.sql.transfer import SqlTransfer
from abpilot.store.sql.unit_reads import SqlUnitReads


def _translates_conflicts(engine: sa.Engine) -> bool:
    """Whether ``translate_conflicts`` is among the engine's ``handle_error`` hooks, asked of its
    dialect, where SQLAlchemy keeps them. Not ``sa.event.contains(engine, ...)``: that answers
    by the engine's ``id()``, and a closed engine's id stays in SQLAlchemy's event registry as
    long as its dialect lives (an ``lru_cache`` in SQLAlchemy's PostgreSQL dialect holds it), so
    a new engine at the same address looked hooked and its unique violations escaped as
    ``IntegrityError`` (2 of 200 stores opened and closed in one process)."""
    return translate_conflicts in list(engine.dialect.dispatch.handle_error)


class SqlStore(
    SqlIntake,
    SqlUnitReads,
    SqlHistory,
    SqlContextual,
    SqlDocuments,
    SqlActivity,
    SqlTransfer,
    StoreDefaults,
):
    def __init__(self, engine: sa.Engine, *, event_id_retention_days: int = 0) -> None:
        self.engine = engine
        self.event_id_retention_days = check_retention(event_id_retention_days)
        for each in (engine, sql_engine.autocommit_twin(engine)):
            if each is not None and not _translates_conflicts(each):
                sa.event.listen(each, "handle_error", translate_conflicts)
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    @classmethod
    def from_url(
        cls, url: str, *, migrate: bool = True, event_id_retention_days: int = 0, **options: Any
    ) -> SqlStore:
        retention = check_retention(event_id_retention_days)
        engine = sql_engine.create_engine(url, **options)
        if migrate:
            try:
                sql_engine.upgrade(engine)
            except sa.exc.OperationalError as error:
                sql_engine.dispose(engine)
                raise StoreUnavailable(f"the database is unavailable: {error.orig}") from error
        return cls(engine, event_id_retention_days=retention)

    # experiments -----------------------------------------------------------------------------

    @guarded
    def create_experiment(self, experiment: Experiment) -> None:
        # When another process takes the key (or id) between the check and the insert, the
        # database's unique constraint refuses the insert: DuplicateKey (translate_conflicts).
        with self._write() as conn, conn.begin():
            self._insert_definition(conn, experiment)

    def _insert_definition(self, conn: sa.Connection, experiment: Experiment) -> None:
        self._check_key_free(conn, experiment.key, experiment.id)
        conn.execute(experiments.insert().values(**_experiment_row(experiment)))
        conn.execute(variants.insert(), _variant_rows(experiment))

    @guarded
    def get_experiment(self, experiment_id: str) -> Experiment | None:
        """One statement (the experiment joined to its variants), so one round trip on
        PostgreSQL where ``_load``'s two reads in a transaction took four: the service reads
        the definition on every event."""
        names = list(variants.c.keys())
        query = (
            sa.select(experiments, *(variants.c[n].label(f"variant_{n}") for n in names))
            .outerjoin(variants, variants.c.experiment_id == experiments.c.id)
            .where(experiments.c.id == experiment_id)
            .order_by(variants.c.position)
        )
        with one_read(self.engine) as conn:
            rows = conn.execute(query).mappings().all()
        if not rows:
            return None
        variant_rows = [
            {n: row[f"variant_{n}"] for n in names}
            for row in rows
            if row["variant_experiment_id"] is not None
        ]
        return _experiment_from_row(rows[0], variant_rows)

    @guarded
    def get_experiment_id(self, key: str) -> str | None:
        with one_read(self.engine) as conn:
            query = sa.select(experiments.c.id).where(experiments.c.key == key)
            return conn.execute(query).scalar_one_or_none()

    @guarded
    def list_experiments(self, status: ExperimentStatus | None = None) -> list[Experiment]:
        where = sa.true() if status is None else experiments.c.status == status.value
        return self._load(where)

    @guarded
    def update_experiment(self, experiment: Experiment, *, expected_version: int) -> None:
        # A key taken by a concurrent rename after the check: DuplicateKey, as for create.
        with self._write() as conn, conn.begin():
            self._check_key_free(conn, experiment.key, experiment.id)
            updated = conn.execute(
                experiments.update()
                .where(experiments.c.id == experiment.id)
                .where(experiments.c.version == expected_version)
                .values(**_experiment_row(experiment))
            )
            if updated.rowcount == 0:
                exists = conn.execute(
                    sa.select(experiments.c.id).where(experiments.c.id == experiment.id)
                ).first()
                if exists is None:
                    raise ExperimentNotFound(f"experiment {experiment.id} does not exist")
                raise ConcurrentModification(
                    f"experiment '{experiment.key}' was changed by someone else; reload and retry"
                )
            conn.execute(variants.delete().where(variants.c.experiment_id == experiment.id))
            conn.execute(variants.insert(), _variant_rows(experiment))

    @guarded
    def delete_experiment(self, experiment_id: str) -> bool:
        with self._write() as conn, conn.begin():
            for table in PER_EXPERIMENT_TABLES:
                conn.execute(table.delete().where(table.c.experiment_id == experiment_id))
            deleted = conn.execute(experiments.delete().where(experiments.c.id == experiment_id))
            return deleted.rowcount > 0

    def _load(self, where: sa.ColumnElement[bool]) -> list[Experiment]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(experiments)
                    .where(where)
                    .order_by(experiments.c.created_at, experiments.c.id)
                )
                .mappings()
                .all()
            )
            if not rows:
                return []
            ids = [row["id"] for row in rows]
            by_experiment: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            variant_rows = conn.execute(
                sa.select(variants)
                .where(variants.c.experiment_id.in_(ids))
                .order_by(variants.c.experiment_id, variants.c.position)
            ).mappings()
            for variant in variant_rows:
                by_experiment[variant["experiment_id"]].append(dict(variant))
        return [_experiment_from_row(row, by_experiment[row["id"]]) for row in rows]

    def _check_key_free(self, conn: sa.Connection, key: str, own_id: str) -> None:
        query = sa.select(experiments.c.id).where(experiments.c.key == key)
        other = conn.execute(query).scalar_one_or_none()
        if other is not None and other != own_id:
            raise experiment_taken("key", key)

    # assignments -----------------------------------------------------------------------------

    @guarded
    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        wanted = sorted(set(unit_ids))
        if not wanted:
            return {}
        with one_read(self.engine) as conn:
            rows = select_units(
                conn, "unit_id, variant, period", "assignments", experiment_id, wanted
            )
        found = {unit: StoredAssignment(variant, int(period)) for unit, variant, period in rows}
        return found

    @guarded
    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        # Faster than the default: two queries per chunk of ids in one transaction, where the
        # default makes two per experiment.
        by_experiment = self._period_counters(sorted(set(experiment_ids)))
        return {e: sum_periods(by_period) for e, by_period in by_experiment.items()}

    @guarded
    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]:
        return self._period_counters([experiment_id]).get(experiment_id, {})

    def _period_counters(
        self, experiment_ids: Sequence[str]
    ) -> dict[str, dict[int, dict[str, VariantCounters]]]:
        """Per-period counters of those experiments that have any: one transaction, one query
        per table and chunk of ids."""
        counts: dict[str, list[tuple[int, str, int, int, int]]] = {}
        totals: dict[str, list[tuple[int, str, str, MetricTotals]]] = {}
        v, m = variant_counters.c, metric_counters.c
        with self.engine.connect() as conn, conn.begin():
            for chunk in chunks(experiment_ids):
                plain = sa.select(
                    v.experiment_id,
                    v.period,
                    v.variant,
                    v.assigned_units,
                    v.exposures,
                    v.unique_units,
                ).where(v.experiment_id.in_(chunk))
                for e, period, variant, assigned, exposures, unique in conn.execute(plain):
                    row = (int(period), variant, int(assigned), int(exposures), int(unique))
                    counts.setdefault(e, []).append(row)
                stats = sa.select(
                    m.experiment_id,
                    m.period,
                    m.variant,
                    m.metric,
                    *(m[name] for name in METRIC_FIELDS),
                ).where(m.experiment_id.in_(chunk))
                for found in conn.execute(stats).mappings():
                    sums = MetricTotals.from_stored(dict(found))
                    entry = (
                        int(found["period"]),
                        str(found["variant"]),
                        str(found["metric"]),
                        sums,
                    )
                    totals.setdefault(found["experiment_id"], []).append(entry)
        return {
            e: group_counters(counts.get(e, []), totals.get(e, []))
            for e in sorted(counts.keys() | totals.keys())
        }

    @guarded
    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        sql_engine.dispose(self.engine)


def _experiment_row(experiment: Experiment) -> dict[str, Any]:
    return {
        "id": experiment.id,
        "key": experiment.key,
        "name": experiment.name,
        "description": experiment.description,
        "type": experiment.type.value,
        "status": experiment.status.value,
        "traffic_allocation": experiment.traffic_allocation,
        "salt": experiment.salt,
        "metrics": metrics_to_list(experiment.metrics),
        "settings": dict(experiment.settings),
        "created_at": experiment.created_at,
        "updated_at": experiment.updated_at,
        "started_at": experiment.started_at,
        "ended_at": experiment.ended_at,
        "winner": experiment.winner,
        "version": experiment.version,
        "open_metrics": experiment.open_metrics,
        "dimensions": list(experiment.dimensions) or None,
    }


def _variant_rows(experiment: Experiment) -> list[dict[str, Any]]:
    return [
        {"experiment_id": experiment.id, "position": i, **variant_to_dict(v)}
        for i, v in enumerate(experiment.variants)
    ]


def _experiment_from_row(row: Any, variant_rows: list[dict[str, Any]]) -> Experiment:
    def moment(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return Experiment(
        id=row["id"],
        key=row["key"],
        name=row["name"],
        description=row["description"],
        type=ExperimentType(row["type"]),
        status=ExperimentStatus(row["status"]),
        traffic_allocation=float(row["traffic_allocation"]),
        salt=row["salt"],
        variants=tuple(variant_from_dict(v) for v in variant_rows),
        metrics=metrics_from_list(row["metrics"]),
        settings=row["settings"] or {},
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
        started_at=moment(row["started_at"]),
        ended_at=moment(row["ended_at"]),
        winner=row["winner"],
        version=int(row["version"]),
        open_metrics=bool(row["open_metrics"]),
        dimensions=tuple(row["dimensions"] or ()),
    )
