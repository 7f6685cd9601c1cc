"""Initial schema: experiments, variants, assignments, counters per allocation period,
processed event ids, daily intake (clean and raw), allocation history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Id = sa.String(36)
Key = sa.String(100)
UnitId = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", Id, primary_key=True),
        sa.Column("key", Key, nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("traffic_allocation", sa.Double, nullable=False),
        sa.Column("salt", sa.String(200), nullable=False),
        sa.Column("metrics", JSONDoc, nullable=False),
        sa.Column("settings", JSONDoc, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("winner", Key),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "variants",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("key", Key, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("weight", sa.Double, nullable=False),
        sa.Column("is_control", sa.Boolean, nullable=False),
        sa.Column("config", JSONDoc, nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("unit_id", UnitId, primary_key=True),
        sa.Column("variant", Key, nullable=False),
        sa.Column("period", sa.Integer, nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "exposed_units",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("unit_id", UnitId, primary_key=True),
    )
    op.create_table(
        "unit_metrics",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("unit_id", UnitId, primary_key=True),
        sa.Column("metric", Key, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("total", sa.Double, nullable=False),
    )
    op.create_table(
        "variant_counters",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("variant", Key, primary_key=True),
        sa.Column("period", sa.Integer, primary_key=True),
        sa.Column("assigned_units", sa.BigInteger, nullable=False),
        sa.Column("exposures", sa.BigInteger, nullable=False),
        sa.Column("unique_units", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "metric_counters",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("variant", Key, primary_key=True),
        sa.Column("period", sa.Integer, primary_key=True),
        sa.Column("metric", Key, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("sum", sa.Double, nullable=False),
        sa.Column("sum_squares", sa.Double, nullable=False),
    )
    op.create_table(
        "processed_events",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("event_id", UnitId, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "daily_metrics",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("variant", Key, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "raw_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", Id, nullable=False, index=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "allocations",
        sa.Column("experiment_id", Id, primary_key=True),
        sa.Column("period", sa.Integer, primary_key=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("weights", JSONDoc, nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("seed", sa.BigInteger),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("details", JSONDoc, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "allocations",
        "raw_metrics",
        "daily_metrics",
        "processed_events",
        "metric_counters",
        "variant_counters",
        "unit_metrics",
        "exposed_units",
        "assignments",
        "variants",
        "experiments",
    ):
        op.drop_table(table)
