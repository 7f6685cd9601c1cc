"""The Alembic revisions build exactly the schema the queries expect, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from abpilot.store.sql import engine as sql_engine
from abpilot.store.sql.schema import metadata
from tests.conftest import backend_url

HEAD = "0008"
# The tables ("table"), columns ("table.column") and indexes ("index:name") each revision adds,
# to check its upgrade and downgrade.
ADDED = {
    "0002": {"documents"},
    "0003": {"decisions", "decision_feedback", "bandit_states"},
    "0004": {"variant_counters.last_event_at", "metric_counters.last_event_at"},
    "0005": {"decisions.rating", "index:ix_decisions_experiment_id_unit_id_decided_at"},
    "0006": {"experiments.open_metrics"},
    "0007": {"experiments.dimensions"},
    "0008": {"index:ix_processed_events_processed_at"},
}


def schema_names(engine: sa.Engine) -> set[str]:
    """Every table, every column as "table.column" and every index as "index:name"."""
    inspector = sa.inspect(engine)
    tables = set(inspector.get_table_names())
    columns = {f"{t}.{c['name']}" for t in tables for c in inspector.get_columns(t)}
    indexes = {f"index:{i['name']}" for t in tables for i in inspector.get_indexes(t)}
    return tables | columns | indexes


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrated_schema_matches_metadata(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, _):
        engine = sql_engine.create_engine(url)
        try:
            sql_engine.upgrade(engine)
            assert sql_engine.current_revision(engine) == HEAD
            with engine.connect() as conn:
                differences = compare_metadata(MigrationContext.configure(conn), metadata)
            assert differences == []
            sql_engine.upgrade(engine)  # a second upgrade is a no-op
            assert sql_engine.current_revision(engine) == HEAD
        finally:
            engine.dispose()


@pytest.mark.parametrize("revision", sorted(ADDED))
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_revision_upgrades_and_downgrades(backend: str, revision: str, tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    previous = f"{int(revision) - 1:04d}"
    with backend_url(backend, tmp_path) as (url, _):
        engine = sql_engine.create_engine(url)
        try:
            sql_engine.upgrade(engine, previous)
            assert not ADDED[revision] & schema_names(engine)
            sql_engine.upgrade(engine)
            assert sql_engine.current_revision(engine) == HEAD
            assert ADDED[revision] <= schema_names(engine)
            config = Config()
            config.set_main_option("script_location", str(sql_engine.MIGRATIONS))
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.downgrade(config, previous)
            assert sql_engine.current_revision(engine) == previous
            assert not ADDED[revision] & schema_names(engine)
            sql_engine.upgrade(engine)  # and back up again
            assert ADDED[revision] <= schema_names(engine)
        finally:
            engine.dispose()


def test_cli_db_upgrade(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abpilot.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert HEAD in result.output
    assert HEAD in CliRunner().invoke(app, ["db", "current", "--database-url", url]).output


def test_migrations_in_other_schemas_do_not_wait_for_each_other() -> None:
    """Processes starting at once in ONE schema take turns on its migration lock; deployments
    (or test runs) in other schemas of the same server do not queue behind them."""
    import threading

    from tests.conftest import postgres_schema_url

    with postgres_schema_url() as held_url, postgres_schema_url() as other_url:
        holder = sa.create_engine(held_url)
        other = sql_engine.create_engine(other_url)
        try:
            with holder.connect() as conn:
                keys = {"id": sql_engine.MIGRATION_LOCK_ID}
                conn.execute(sa.text(f"SELECT pg_advisory_lock({sql_engine._LOCK_KEYS})"), keys)
                # Another schema migrates while this one's lock is held (a lock shared by every
                # schema would keep it polling: the join's limit only keeps a failure from hanging).
                done = threading.Thread(target=sql_engine.upgrade, args=(other,), daemon=True)
                done.start()
                done.join(timeout=120)
                assert not done.is_alive(), "the other schema waited for this schema's lock"
                assert sql_engine.current_revision(other) == HEAD
                conn.execute(sa.text(f"SELECT pg_advisory_unlock({sql_engine._LOCK_KEYS})"), keys)
        finally:
            holder.dispose()
            other.dispose()


def test_processes_starting_at_once_migrate_once_each_waiting_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers upgrading one fresh PostgreSQL schema at once: the session lock lets one
    migrate while the others poll; all of them end at the head, with the schema the queries
    expect. 0008 builds its index CONCURRENTLY here, as on a big table, outside a transaction."""
    import threading

    monkeypatch.setattr(sql_engine, "CONCURRENT_INDEX_ROWS", -2.0)
    with backend_url("postgres", tmp_path) as (url, _):
        engines = [sql_engine.create_engine(url) for _ in range(4)]
        errors: list[BaseException] = []

        def upgrade(engine: sa.Engine) -> None:
            try:
                sql_engine.upgrade(engine)
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert sql_engine.current_revision(engines[0]) == HEAD
            assert "index:ix_processed_events_processed_at" in schema_names(engines[0])
            with engines[0].connect() as conn:
                valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = :name ::regclass"
                name = {"name": "ix_processed_events_processed_at"}
                assert conn.execute(sa.text(valid), name).scalar_one() is True
        finally:
            for engine in engines:
                engine.dispose()
