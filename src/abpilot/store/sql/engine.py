"""Engine creation and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

from abpilot.store.sql.bulk import driver_rows

MIGRATIONS = Path(__file__).parent / "migrations"
WRITE = "abpilot_write"
# The first key of the two-int4 advisory lock migrations take (the second: the schema's hash); any
# 32-bit constant works, as long as every process that migrates this database uses it.
MIGRATION_LOCK_ID = 0x61627069
_LOCK_KEYS = ":id, hashtext(current_database() || '.' || coalesce(current_schema(), ''))"
_LOCK = {"id": MIGRATION_LOCK_ID}
MIGRATION_LOCK_POLL_SECONDS = 0.1
PING_IDLE_SECONDS = 1.0  # PostgreSQL: a pooled connection idle this long is pinged before use
_RETURNED = "abpilot_returned_at"
# Above this many rows (the planner's estimate) a migration builds an index CONCURRENTLY (0008).
CONCURRENT_INDEX_ROWS = 100_000


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
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    engine = sa.create_engine(url, **options)
    # The twin's pool opens connections only when a one-statement path first asks for one.
    twin = sa.create_engine(url, **{**options, "max_overflow": 0, "isolation_level": "AUTOCOMMIT"})
    _AUTOCOMMIT_TWINS[engine] = twin
    if "pool_pre_ping" not in options:
        _ping_when_idle(engine)
        _ping_when_idle(twin)
    return engine


# PostgreSQL: the autocommit twin of each engine ``create_engine`` made. A statement that is a
# whole transaction by itself (``one_read``: a read, ``ASSIGN_ONE``, ``EXPOSE_ONE``) runs on a
# connection of the twin's pool, which was opened in autocommit and stays so: on the main pool
# SQLAlchemy switched the connection's isolation level on every checkout and back on checkin,
# about 30 µs of a 140 µs assignment's CPU. The twin holds at most ``pool_size`` connections
# (no overflow): a worker opens at most ``2 * pool_size + max_overflow`` connections in all.
_AUTOCOMMIT_TWINS: weakref.WeakKeyDictionary[sa.Engine, sa.Engine] = weakref.WeakKeyDictionary()


def autocommit_twin(engine: sa.Engine) -> sa.Engine | None:
    """The autocommit twin of a PostgreSQL engine ``create_engine`` made, else None."""
    return _AUTOCOMMIT_TWINS.get(engine)


def dispose(engine: sa.Engine) -> None:
    """Close every pooled connection of ``engine`` and of its autocommit twin."""
    twin = _AUTOCOMMIT_TWINS.get(engine)
    if twin is not None:
        twin.dispose()
    engine.dispose()


# SQLite: one lock per engine that this process's writers take before BEGIN IMMEDIATE (below).
_SQLITE_WRITERS: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()


@contextmanager
def write_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for one write transaction (``with write_connection(e) as conn,
    conn.begin():``). On SQLite the process's writers queue on a lock, held until the
    connection is returned: SQLite has one writer at a time, and a writer that finds the
    database locked sleeps in its busy handler for 1 to 100 ms before trying again, where one
    waiting on this lock starts the moment the other commits (the busy handler still orders
    the writers of other processes). Re-entrant: a write may be nested in another."""
    lock = _SQLITE_WRITERS.get(engine)
    if lock is None:
        with engine.connect().execution_options(**{WRITE: True}) as conn:
            yield conn
        return
    with lock, engine.connect().execution_options(**{WRITE: True}) as conn:
        yield conn


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled connection before use only when it sat idle for ``PING_IDLE_SECONDS``
    (SQLAlchemy's pessimistic disconnect handling, made lazy): ``pool_pre_ping`` cost one round
    trip on every checkout, a quarter of a single event's. A connection the server dropped
    while idle is replaced before use, as with ``pool_pre_ping``; one dropped within the last
    second fails its operation (``StoreUnavailable``, nothing committed) and SQLAlchemy then
    replaces every pooled connection, so the next operation reconnects."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is None or time.monotonic() - returned < PING_IDLE_SECONDS:
            return  # new (just connected) or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise sa.exc.DisconnectionError(f"a pooled connection was closed: {error}") from error
        if not alive:
            raise sa.exc.DisconnectionError("a pooled connection was closed")


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL for concurrent readers; writers take the lock up front (BEGIN IMMEDIATE) so two
    writers never deadlock upgrading a shared lock, and queue on the process's lock first
    (``write_connection``); pysqlite's own BEGIN handling is off."""
    _SQLITE_WRITERS[engine] = threading.RLock()

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
        # On the driver's cursor (``driver_rows``: SQLAlchemy's error handling, without its
        # execution context, a third of a single exposure's statements' cost).
        driver_rows(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN", ())


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic; safe when several processes start at once.

    SQLite: one write transaction (BEGIN IMMEDIATE) holds the database for the whole upgrade.
    PostgreSQL: a session advisory lock serialises the migrating processes and each revision
    runs in its own transaction, so a revision may build an index CONCURRENTLY outside one
    (0008). The lock is polled, not waited for: a session blocked in ``pg_advisory_lock``
    holds a snapshot that CREATE INDEX CONCURRENTLY would wait for, a deadlock."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine.dialect.name != "postgresql":
        with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        return
    # One lock per database and schema: deployments (and test runs) in other schemas of the same
    # server migrate at the same time instead of queueing behind each other.
    with engine.connect() as conn:
        try_lock = sa.text(f"SELECT pg_try_advisory_lock({_LOCK_KEYS})")
        while not conn.execute(try_lock, _LOCK).scalar():
            conn.commit()
            time.sleep(MIGRATION_LOCK_POLL_SECONDS)
        conn.commit()  # the session lock stays; Alembic begins a transaction per revision
        try:
            config.attributes["connection"] = conn
            config.attributes["transaction_per_migration"] = True
            command.upgrade(config, revision)
        finally:
            conn.rollback()
            conn.execute(sa.text(f"SELECT pg_advisory_unlock({_LOCK_KEYS})"), _LOCK)
            conn.commit()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
