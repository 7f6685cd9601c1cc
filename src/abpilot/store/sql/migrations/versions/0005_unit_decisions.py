"""Feedback by unit and ratings: an index on decisions (experiment_id, unit_id, decided_at), so a
unit's latest decision is one index lookup (feedback that names a unit, not a decision), and the
value of the rating feedback applied to each decision (monitoring's average rating). Nullable:
decisions logged before have no rating.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_decisions_experiment_id_unit_id_decided_at"


def upgrade() -> None:
    op.create_index(INDEX, "decisions", ["experiment_id", "unit_id", "decided_at"])
    op.add_column("decisions", sa.Column("rating", sa.Double))


def downgrade() -> None:
    # Batch mode: SQLite rebuilds the table; PostgreSQL drops the column in place.
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("rating")
    op.drop_index(INDEX, table_name="decisions")
