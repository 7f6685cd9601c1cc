"""Daily intake, allocation history and scheduler leadership for the SQL store."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from filelock import FileLock, Timeout

from abpilot.store.base import AllocationRecord, DailyRow, RawMetrics, period_taken
from abpilot.store.codec import as_utc
from abpilot.store.sql.common import chunks, guarded
from abpilot.store.sql.engine import write_connection
from abpilot.store.sql.schema import allocations, daily_metrics, experiments, raw_metrics


class PostgresLease:
    """A session-level advisory lock, held on its own connection until released."""

    def __init__(self, connection: sa.Connection, key: int) -> None:
        self.connection, self.key = connection, key

    def renew(self) -> bool:
        try:
            self.connection.execute(sa.text("SELECT 1"))
            self.connection.commit()  # never sit "idle in transaction" (it holds back VACUUM)
            return True
        except sa.exc.DBAPIError:
            return False

    def release(self) -> None:
        try:
            self.connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except sa.exc.DBAPIError:
            pass
        finally:
            self.connection.close()


class FileLease:
    """An exclusive lock on a file beside the SQLite database (one host)."""

    def __init__(self, lock: FileLock | None, fallback: threading.Lock | None = None) -> None:
        self.lock, self.fallback = lock, fallback

    def renew(self) -> bool:
        return True

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
        if self.fallback is not None:
            self.fallback.release()


_IN_MEMORY_LOCKS: dict[str, threading.Lock] = {}


class SqlHistory:
    """Mixed into ``SqlStore``: needs ``engine``, ``_insert`` and ``_write``."""

    engine: sa.Engine
    _insert: Any

    def _write(self) -> AbstractContextManager[sa.Connection]:
        return write_connection(self.engine)

    @guarded
    def record_daily_metrics(
        self,
        experiment_id: str,
        day: date,
        rows: Sequence[DailyRow],
        payload: str,
        received_at: datetime,
    ) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(
                raw_metrics.insert().values(
                    experiment_id=experiment_id, day=day, payload=payload, received_at=received_at
                )
            )
            if not rows:
                return
            values = [
                {
                    "experiment_id": experiment_id,
                    "variant": r.variant,
                    "day": r.day,
                    "impressions": r.impressions,
                    "clicks": r.clicks,
                    "updated_at": received_at,
                }
                for r in sorted(rows, key=lambda r: (r.variant, r.day))
            ]
            stmt = self._insert(daily_metrics).values(values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[
                        daily_metrics.c.experiment_id,
                        daily_metrics.c.variant,
                        daily_metrics.c.day,
                    ],
                    set_={n: stmt.excluded[n] for n in ("impressions", "clicks", "updated_at")},
                )
            )

    @guarded
    def get_daily_metrics(self, experiment_id: str) -> list[DailyRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(daily_metrics)
                .where(daily_metrics.c.experiment_id == experiment_id)
                .order_by(daily_metrics.c.day, daily_metrics.c.variant)
            ).mappings()
            return [
                DailyRow(r["day"], r["variant"], int(r["impressions"]), int(r["clicks"]))
                for r in rows
            ]

    @guarded
    def get_daily_metrics_many(self, experiment_ids: Iterable[str]) -> dict[str, list[DailyRow]]:
        # Faster than the default: one query per chunk of ids, not one per experiment.
        found: dict[str, list[DailyRow]] = {}
        d = daily_metrics.c
        with self.engine.connect() as conn, conn.begin():
            for chunk in chunks(sorted(set(experiment_ids))):
                query = (
                    sa.select(d.experiment_id, d.day, d.variant, d.impressions, d.clicks)
                    .where(d.experiment_id.in_(chunk))
                    .order_by(d.experiment_id, d.day, d.variant)
                )
                for e, day, variant, impressions, clicks in conn.execute(query):
                    row = DailyRow(day, variant, int(impressions), int(clicks))
                    found.setdefault(e, []).append(row)
        return found

    @guarded
    def get_raw_metrics(self, experiment_id: str) -> list[RawMetrics]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(raw_metrics)
                .where(raw_metrics.c.experiment_id == experiment_id)
                .order_by(raw_metrics.c.id)
            ).mappings()
            return [RawMetrics(as_utc(r["received_at"]), r["day"], r["payload"]) for r in rows]

    def add_allocation(
        self, record: AllocationRecord, *, expected_period: int | None = None
    ) -> AllocationRecord:
        expected = None if expected_period is None else {record.experiment_id: expected_period}
        return self.add_allocations([record], expected_periods=expected)[0]

    @guarded
    def add_allocations(
        self,
        records: Sequence[AllocationRecord],
        *,
        expected_periods: Mapping[str, int] | None = None,
    ) -> list[AllocationRecord]:
        if not records:
            return []
        last: dict[str, int] = {}
        with self._write() as conn, conn.begin():
            touched = {r.experiment_id for r in records} | set(expected_periods or {})
            for chunk in chunks(sorted(touched)):
                # Lock the experiments' rows (SQLite: BEGIN IMMEDIATE locks the database) before
                # reading their latest periods, so that concurrent changes take the next periods
                # in turn and no addition comes between the compare and the set below; in id
                # order, as every batch does, so two batches cannot deadlock. (experiment_id,
                # period) is the primary key besides: a period taken anyway is a
                # ConcurrentModification (translate_conflicts).
                conn.execute(
                    sa.select(experiments.c.id)
                    .where(experiments.c.id.in_(chunk))
                    .order_by(experiments.c.id)
                    .with_for_update()
                )
                found = conn.execute(
                    sa.select(allocations.c.experiment_id, sa.func.max(allocations.c.period))
                    .where(allocations.c.experiment_id.in_(chunk))
                    .group_by(allocations.c.experiment_id)
                )
                last.update((e, int(period)) for e, period in found)
            for experiment_id, expected in (expected_periods or {}).items():
                if last.get(experiment_id, 0) != expected:
                    raise period_taken(experiment_id, expected, last.get(experiment_id, 0))
            stored = []
            for record in records:
                last[record.experiment_id] = last.get(record.experiment_id, 0) + 1
                stored.append(
                    AllocationRecord(
                        experiment_id=record.experiment_id,
                        period=last[record.experiment_id],
                        computed_at=record.computed_at,
                        weights=dict(record.weights),
                        method=record.method,
                        seed=record.seed,
                        source=record.source,
                        details=dict(record.details),
                    )
                )
            conn.execute(
                allocations.insert(),
                [
                    {
                        "experiment_id": r.experiment_id,
                        "period": r.period,
                        "computed_at": r.computed_at,
                        "weights": r.weights,
                        "method": r.method,
                        "seed": r.seed,
                        "source": r.source,
                        "details": r.details,
                    }
                    for r in stored
                ],
            )
        return stored

    @guarded
    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(allocations)
                .where(allocations.c.experiment_id == experiment_id)
                .order_by(allocations.c.period)
            ).mappings()
            return [_allocation(r) for r in rows]

    @guarded
    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(allocations)
                    .where(allocations.c.experiment_id == experiment_id)
                    .order_by(allocations.c.period.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            return None if row is None else _allocation(row)

    @guarded
    def latest_allocations(self, experiment_ids: Iterable[str]) -> dict[str, AllocationRecord]:
        # Faster than the default: one query per chunk of ids, not one per experiment.
        found: dict[str, AllocationRecord] = {}
        a = allocations.c
        with self.engine.connect() as conn, conn.begin():
            for chunk in chunks(sorted(set(experiment_ids))):
                last = (
                    sa.select(a.experiment_id, sa.func.max(a.period).label("period"))
                    .where(a.experiment_id.in_(chunk))
                    .group_by(a.experiment_id)
                    .subquery()
                )
                query = sa.select(allocations).join(
                    last, (a.experiment_id == last.c.experiment_id) & (a.period == last.c.period)
                )
                for row in conn.execute(query).mappings():
                    found[row["experiment_id"]] = _allocation(row)
        return found

    @guarded
    def try_lead(self, name: str, ttl_seconds: float) -> PostgresLease | FileLease | None:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            scope = conn.execute(sa.text("SELECT current_database() || '.' || current_schema()"))
            key = _lock_key(f"{scope.scalar_one()}.{name}")
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if got:
                return PostgresLease(conn, key)
            conn.close()
            return None
        database = self.engine.url.database
        if not database or database == ":memory:":
            lock = _IN_MEMORY_LOCKS.setdefault(f"{id(self.engine)}.{name}", threading.Lock())
            return FileLease(None, lock) if lock.acquire(blocking=False) else None
        file_lock = FileLock(str(Path(database).with_name(f"{Path(database).name}.{name}.lock")))
        try:
            file_lock.acquire(timeout=0)
        except Timeout:
            return None
        return FileLease(file_lock)


def _lock_key(text: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, stable across processes."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _allocation(row: Any) -> AllocationRecord:
    return AllocationRecord(
        experiment_id=row["experiment_id"],
        period=int(row["period"]),
        computed_at=as_utc(row["computed_at"]),
        weights=row["weights"],
        method=row["method"],
        seed=None if row["seed"] is None else int(row["seed"]),
        source=row["source"],
        details=row["details"],
    )
