"""The dedupe window: an index on processed_events (processed_at), the time each event id was
claimed, so the leader prunes ids older than EVENT_ID_RETENTION_DAYS in small batches without
scanning the table.

Safe on a big table: on PostgreSQL the index is built with CREATE INDEX CONCURRENTLY (outside a
transaction: intake goes on writing while it builds). A build interrupted half-way leaves an
invalid index behind; the next upgrade drops it and builds it again. SQLite builds it in place.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX = "ix_processed_events_processed_at"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(INDEX, "processed_events", ["processed_at"])
        return
    with op.get_context().autocommit_block():
        op.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"))
        op.create_index(INDEX, "processed_events", ["processed_at"], postgresql_concurrently=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="processed_events")
