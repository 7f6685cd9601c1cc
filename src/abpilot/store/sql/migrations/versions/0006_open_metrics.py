"""Open metrics: an experiment created without declared metrics registers each metric a
conversion names on first use. Experiments stored before keep refusing unknown metrics (false).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "experiments",
        sa.Column("open_metrics", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Batch mode: SQLite rebuilds the table; PostgreSQL drops the column in place.
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("open_metrics")
