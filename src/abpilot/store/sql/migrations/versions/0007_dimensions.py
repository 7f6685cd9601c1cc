"""Dimensions: the unit dimensions an experiment breaks its counters down by (issue 18, a
JSON list of names). Experiments stored before declare none (null).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "experiments",
        sa.Column("dimensions", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )


def downgrade() -> None:
    # Batch mode: SQLite rebuilds the table; PostgreSQL drops the column in place.
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("dimensions")
