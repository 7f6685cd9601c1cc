"""The SQL store's set-based intake (``abpilot.store.sql.bulk``): ids and numbers reach the
database exactly as sent (PostgreSQL gets them as array literals the store writes itself), and
a pooled PostgreSQL connection the server dropped while idle is replaced before it is used."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from abpilot.domain.errors import StoreUnavailable
from abpilot.store.base import EventKind, EventRecord
from abpilot.store.factory import open_store
from abpilot.store.sql import SqlStore, bulk, engine
from tests.conftest import backend_url
from tests.factories import make_experiment

# Characters an array literal must quote or escape, and text that looks like its syntax.
ODD_IDS = ['a"b', "c\\d", 'e\\"f', "x,y", "{z}", "NULL", "null", " sp ", "tab\there", "é,ü", "}{"]
AWKWARD_VALUES = [0.1, 1 / 3, 1e-300, 5e-324, 1.2345678901234567e150, -2.5, 123456789.123456789]
RECEIVED = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)


def exposure(experiment_id: str, unit: str, variant: str = "control") -> EventRecord:
    return EventRecord(
        EventKind.EXPOSURE,
        experiment_id,
        variant,
        unit_id=unit,
        event_id=f"x-{unit}",
        received_at=RECEIVED,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_odd_unit_and_event_ids_are_stored_and_recognised_exactly(
    backend: str, tmp_path: Path
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        experiment = make_experiment("odd-ids")
        store.create_experiment(experiment)
        events = [exposure(experiment.id, unit) for unit in ODD_IDS]
        assert store.apply_events(events).applied == len(ODD_IDS)

        stored = store.get_assignments(experiment.id, [*ODD_IDS, "never-seen"])
        assert sorted(stored) == sorted(ODD_IDS)
        assert {a.variant for a in stored.values()} == {"control"}
        # The same event ids again: every one is recognised as claimed.
        again = store.apply_events(events)
        assert (again.applied, again.duplicates) == (0, len(ODD_IDS))
        counters = store.get_counters(experiment.id)["control"]
        assert (counters.exposures, counters.unique_units) == (len(ODD_IDS), len(ODD_IDS))
        assert store.last_event_at(experiment.id) == RECEIVED
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_conversion_values_reach_the_unit_totals_bit_for_bit(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        experiment = make_experiment("values")
        store.create_experiment(experiment)
        units = [f"u{i}" for i in range(len(AWKWARD_VALUES))]
        conversions = [
            EventRecord(
                EventKind.CONVERSION,
                experiment.id,
                "control",
                unit_id=unit,
                metric="revenue",
                value=value,
                event_id=f"c-{unit}",
                received_at=RECEIVED,
            )
            for unit, value in zip(units, AWKWARD_VALUES, strict=True)
        ]
        store.apply_events([exposure(experiment.id, unit) for unit in units] + conversions)

        found = store.get_unit_totals(experiment.id, "revenue")
        totals = dict(zip(found.units, found.totals, strict=True))
        assert totals == dict(zip(units, AWKWARD_VALUES, strict=True))
        assert set(found.counts) == {1}
        store.close()


def _drop_pooled_connections(store: SqlStore, url: str) -> None:
    """The server ends every connection in the store's pools (an admin, a restart): the main
    pool's and its autocommit twin's (the one-statement paths')."""
    pids = []
    twin = engine.autocommit_twin(store.engine)
    assert twin is not None
    for each in (store.engine, twin):
        pool = each.pool
        assert isinstance(pool, sa.pool.QueuePool)
        assert pool.checkedin() > 0
        held = [each.connect() for _ in range(pool.checkedin())]
        pids += [conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for conn in held]
        for conn in held:
            conn.close()
    assert pids
    admin = sa.create_engine(engine.normalise_url(url))
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_pooled_postgres_connection_dropped_while_idle_is_replaced_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend_url("postgres", tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        experiment = make_experiment("dropped")
        store.create_experiment(experiment)
        store.assign(experiment.id, "before-drop", "control", 0)  # a connection in each pool

        monkeypatch.setattr(engine, "PING_IDLE_SECONDS", 0.0)  # every reuse counts as idle
        _drop_pooled_connections(store, url)
        assert store.apply_events([exposure(experiment.id, "after-drop")]).applied == 1
        assert store.assign(experiment.id, "assigned-after-drop", "control", 0).created

        # In use a moment ago: not pinged, so the operation fails cleanly (nothing counted)
        # and the pool is renewed for the next one.
        monkeypatch.setattr(engine, "PING_IDLE_SECONDS", 3600.0)
        _drop_pooled_connections(store, url)
        with pytest.raises(StoreUnavailable):
            store.apply_events([exposure(experiment.id, "lost")])
        assert store.apply_events([exposure(experiment.id, "next")]).applied == 1
        assert store.get_counters(experiment.id)["control"].exposures == 2
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_pool_with_every_connection_busy_is_store_unavailable(
    backend: str, tmp_path: Path
) -> None:
    """A worker whose connections are all in use (the database slow, more threads than
    connections) answers StoreUnavailable, a 503, once ``pool_timeout`` passes: not
    SQLAlchemy's TimeoutError, a 500."""
    with backend_url(backend, tmp_path) as (url, options):
        pools = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2}
        store = open_store(url, **options, **pools)
        assert isinstance(store, SqlStore)
        experiment = make_experiment("busy")
        store.create_experiment(experiment)
        engines = [store.engine, engine.autocommit_twin(store.engine)]
        held = [each.connect() for each in engines if each is not None]  # every connection
        with pytest.raises(StoreUnavailable, match="no database connection came free in time"):
            store.get_counters(experiment.id)
        with pytest.raises(StoreUnavailable, match="no database connection came free in time"):
            store.apply_events([exposure(experiment.id, "u1")])
        for conn in held:
            conn.close()
        assert store.apply_events([exposure(experiment.id, "u1")]).applied == 1
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_failing_statement_is_sqlalchemys_error_and_rolls_the_step_back(
    backend: str, tmp_path: Path
) -> None:
    """A statement of the event path that fails, even one sent without waiting for its answer
    (PostgreSQL's pipeline), reaches the store's callers as SQLAlchemy's error, so ``guarded``
    and the conflict translation see it; what the transaction wrote before it is rolled back
    and the connection serves the next operation."""
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        experiment = make_experiment("failing-step")
        store.create_experiment(experiment)
        units = "SELECT count(*) FROM assignments"
        marks = "%s, %s, %s, %s" if backend == "postgres" else "?, ?, ?, ?"
        insert = (
            f"INSERT INTO assignments (experiment_id, unit_id, variant, period) VALUES ({marks})"
        )

        def failing_step() -> None:
            with store._write() as conn, conn.begin(), bulk.pipelined(conn):
                bulk.driver_rows(conn, insert, (experiment.id, "u1", "control", 0))
                bulk.driver_rows(conn, "UPDATE no_such_table SET x = 1", ())  # answered later

        with pytest.raises(sa.exc.DBAPIError):
            failing_step()
        with store._write() as conn:
            assert conn.exec_driver_sql(units).scalar() == 0
        assert store.apply_events([exposure(experiment.id, "u2")]).applied == 1
        store.close()
