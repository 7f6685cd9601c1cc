"""Contextual bandits: the decision log, feedback applied once per (decision, event), and the
counts behind each (context, arm) posterior.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.String(36)
Key = sa.String(100)
UnitId = sa.String(256)
ContextKey = sa.String(500)


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("id", Key, primary_key=True),
        sa.Column("unit_id", UnitId),
        sa.Column("context_key", ContextKey, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("arm", Key, nullable=False),
        sa.Column("propensity", sa.Double, nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("successes", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_decisions_experiment_id_decided_at", "decisions", ["experiment_id", "decided_at"]
    )
    op.create_table(
        "decision_feedback",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("decision_id", Key, primary_key=True),
        sa.Column("event", Key, primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bandit_states",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("context_key", ContextKey, primary_key=True),
        sa.Column("arm", Key, primary_key=True),
        sa.Column("pulls", sa.BigInteger, nullable=False),
        sa.Column("successes", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bandit_states")
    op.drop_table("decision_feedback")
    op.drop_index("ix_decisions_experiment_id_decided_at", table_name="decisions")
    op.drop_table("decisions")
