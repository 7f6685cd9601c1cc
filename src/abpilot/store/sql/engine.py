"""Engine creation and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

MIGRATIONS = Path(__file__).parent / "migrations"
WRITE = "abpilot_write"
# The first key of the two-int4 advisory lock migrations take (the second: the schema's hash); any
# 32-bit constant works, as long as every process that migrates this database uses it.
MIGRATION_LOCK_ID = 0x61627069


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, **options: Any) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **options)
        _configure_sqlite(engine)
        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    return sa.create_engine(url, **options)


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL for concurrent readers; writers take the lock up front (BEGIN IMMEDIATE) so two
    writers never deadlock upgrading a shared lock; pysqlite's own BEGIN handling is off."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic; safe when several processes start at once."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # One lock per database and schema: deployments (and test runs) in other schemas of
            # the same server migrate at the same time instead of queueing behind each other.
            conn.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(:id, hashtext(current_database() || '.' || "
                    "coalesce(current_schema(), '')))"
                ),
                {"id": MIGRATION_LOCK_ID},
            )
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
