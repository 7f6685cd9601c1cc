"""SQL store (SQLite and PostgreSQL) on SQLAlchemy Core, schema by Alembic migrations."""

from abpilot.store.sql.store import SqlStore

__all__ = ["SqlStore"]
