"""SQL store details that only show under concurrency: a lost race for a key is a DuplicateKey
(the database's unique constraint, translated in one place for every statement), and a leader's
lease leaves no transaction open."""

from __future__ import annotations

import weakref
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from abpilot.domain.errors import ConcurrentModification, DuplicateKey
from abpilot.store.base import AllocationRecord
from abpilot.store.factory import open_store
from abpilot.store.sql import SqlStore
from abpilot.store.sql import engine as sql_engine
from abpilot.store.sql.schema import allocations, experiments
from tests.conftest import backend_url
from tests.factories import make_experiment


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_key_taken_between_check_and_insert_is_a_duplicate_key(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        store.create_experiment(make_experiment("checkout"))
        # Lose the race: the other worker's insert lands after this one's check.
        monkeypatch.setattr(SqlStore, "_check_key_free", lambda self, conn, key, own_id: None)
        with pytest.raises(DuplicateKey) as refused:
            store.create_experiment(make_experiment("checkout"))
        assert (refused.value.field, refused.value.message) == (
            "key",
            "an experiment with key 'checkout' already exists",
        )
        assert len(store.list_experiments()) == 1
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_key_taken_between_check_and_rename_is_a_duplicate_key(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        store.create_experiment(make_experiment("taken"))
        mine = make_experiment("mine")
        store.create_experiment(mine)
        # Lose the race: the other worker's rename to "taken" lands after this one's check.
        monkeypatch.setattr(SqlStore, "_check_key_free", lambda self, conn, key, own_id: None)
        with pytest.raises(DuplicateKey) as refused:
            store.update_experiment(replace(mine, key="taken", version=2), expected_version=1)
        assert (refused.value.field, refused.value.message) == (
            "key",
            "an experiment with key 'taken' already exists",
        )
        assert store.get_experiment(mine.id) == mine
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_unique_violations_of_any_statement_are_translated_in_one_place(
    backend: str, tmp_path: Path
) -> None:
    """Whatever statement a lost race fails in, the store's engine answers the domain's error;
    an integrity error that is no unique violation is a bug and stays what it is."""
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        exp = make_experiment("checkout")
        store.create_experiment(exp)
        first = AllocationRecord(exp.id, 0, datetime.now(UTC), {"control": 1.0}, "exact", None, "x")
        assert store.add_allocation(first).period == 1

        def insert(table: sa.Table, row: dict[str, object]) -> None:
            with store.engine.begin() as conn:
                conn.execute(table.insert().values(**row))

        row = {c: getattr(exp, c) for c in ("name", "description", "salt", "version")}
        row |= {"type": "ab_test", "status": "draft", "traffic_allocation": 1.0}
        row |= {"metrics": [], "settings": {}, "created_at": exp.created_at}
        row |= {"updated_at": exp.updated_at}
        with pytest.raises(DuplicateKey) as by_key:
            insert(experiments, {**row, "id": "another", "key": "checkout"})
        assert (by_key.value.field, by_key.value.message) == (
            "key",
            "an experiment with key 'checkout' already exists",
        )
        with pytest.raises(DuplicateKey) as by_id:
            insert(experiments, {**row, "id": exp.id, "key": "fresh"})
        assert (by_id.value.field, by_id.value.message) == (
            "id",
            f"an experiment with id {exp.id} already exists",
        )
        period = {
            "experiment_id": exp.id,
            "period": 1,
            "computed_at": datetime.now(UTC),
            "weights": {},
            "method": "exact",
            "source": "events",
            "details": {},
        }
        with pytest.raises(ConcurrentModification) as by_period:
            insert(allocations, period)
        assert by_period.value.field == "period"
        with pytest.raises(sa.exc.IntegrityError):  # NOT NULL: not a race
            insert(experiments, {**row, "id": "third", "key": "third", "name": None})
        assert [e.key for e in store.list_experiments()] == ["checkout"]
        store.close()


# Engines opened and closed until this many new ones sat at a closed one's address.
ADDRESSES_REUSED, MOST_ENGINES = 3, 3_000


def test_a_store_whose_engine_takes_a_closed_one_s_address_translates_unique_violations(
    tmp_path: Path,
) -> None:
    """Stores opened and closed one after another in one process (a test suite, a script, a
    host of tenants): a new engine can sit at a closed one's address, while the closed one's
    dialect lives on in SQLAlchemy's PostgreSQL dialect cache (its schema was checked), and
    with it the event registry's entry for that address. Such a store must still answer a
    unique violation with the domain's error; one in about 150 escaped as IntegrityError."""
    with backend_url("postgres", tmp_path) as (url, options):
        first = open_store(url, **options)  # migrates once
        exp = make_experiment("checkout")
        first.create_experiment(exp)
        first.close()
        row = {"id": "another", "key": "checkout", "name": "n", "description": "", "salt": "s"}
        row |= {"type": "ab_test", "status": "draft", "traffic_allocation": 1.0, "version": 1}
        row |= {"metrics": [], "settings": {}, "created_at": exp.created_at}
        row |= {"updated_at": exp.updated_at}
        closed: dict[int, weakref.ref[sa.Dialect]] = {}  # address -> the closed engine's dialect
        answers: list[str] = []
        for _ in range(MOST_ENGINES):
            engine = sql_engine.create_engine(url, **options)
            dialect = closed.get(id(engine))
            reused = dialect is not None and dialect() is not None
            store = SqlStore(engine)
            with engine.connect() as conn:  # what opening a store does: check the schema
                assert sa.inspect(conn).has_table("experiments")
            if reused:
                try:
                    with engine.begin() as conn:
                        conn.execute(experiments.insert().values(**row))
                except DuplicateKey:
                    answers.append("DuplicateKey")
                except sa.exc.IntegrityError:
                    answers.append("IntegrityError")
            closed[id(engine)] = weakref.ref(engine.dialect)
            store.close()
            del store, engine
            if len(answers) == ADDRESSES_REUSED:
                break
        assert answers == ["DuplicateKey"] * ADDRESSES_REUSED


def test_a_postgres_lease_keeps_no_transaction_open(tmp_path: Path) -> None:
    with backend_url("postgres", tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        lease = store.try_lead("recalculate", ttl_seconds=30)
        assert lease is not None
        assert lease.renew()
        with store.engine.connect() as conn:
            states = conn.execute(
                sa.text(
                    "SELECT state FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE 'SELECT 1%'"
                )
            ).scalars()
            assert "idle in transaction" not in list(states)
        lease.release()
        store.close()
