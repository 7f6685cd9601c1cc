"""Counter times: when the last event counted in each counter row was received (monitoring reads
the latest per experiment to tell when traffic stopped). Nullable: rows written before stay NULL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("variant_counters", "metric_counters")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("last_event_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    for table in TABLES:
        # Batch mode: SQLite rebuilds the table; PostgreSQL drops the column in place.
        with op.batch_alter_table(table) as batch:
            batch.drop_column("last_event_at")
