"""The dedupe window: an index on processed_events (processed_at), the time each event id was
claimed, so the leader prunes ids older than EVENT_ID_RETENTION_DAYS in small batches without
scanning the table.

Safe on a big table: on PostgreSQL a table of more than ``CONCURRENT_INDEX_ROWS`` rows (by the
planner's estimate) gets its index with CREATE INDEX CONCURRENTLY, outside a transaction: intake
goes on writing while it builds. A build interrupted half-way leaves an invalid index behind; the
next upgrade drops it and builds it again. The concurrent build waits for every transaction older
than it, so an older abpilot starting meanwhile (which waits for the migration lock inside a
transaction) makes a deadlock that PostgreSQL breaks by failing one of the two: run
``abpilot db upgrade`` once before starting the new version on a big database. A smaller table
(a new database, a test schema) is indexed in place, in the revision's transaction, in well
under a second. SQLite builds it in place.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from abpilot.store.sql import engine

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEX = "ix_processed_events_processed_at"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or _estimated_rows(bind) <= engine.CONCURRENT_INDEX_ROWS:
        op.create_index(INDEX, "processed_events", ["processed_at"])
        return
    with op.get_context().autocommit_block():
        op.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"))
        op.create_index(INDEX, "processed_events", ["processed_at"], postgresql_concurrently=True)


def _estimated_rows(bind: sa.Connection) -> float:
    """The planner's estimate of the table's rows (-1 for a table never analysed)."""
    query = sa.text("SELECT reltuples FROM pg_class WHERE oid = 'processed_events'::regclass")
    return float(bind.execute(query).scalar_one())


def downgrade() -> None:
    op.drop_index(INDEX, table_name="processed_events")
