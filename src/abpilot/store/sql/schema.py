"""Table definitions used by the queries. The schema itself is made by the Alembic revisions
in ``migrations/``; a test checks that the two agree."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Counter = sa.BigInteger
Id = sa.String(36)
Key = sa.String(100)
UnitId = sa.String(256)

experiments = sa.Table(
    "experiments",
    metadata,
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
    sa.Column("open_metrics", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("dimensions", JSONDoc),  # a list of names (issue 18); null: none
)

variants = sa.Table(
    "variants",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("key", Key, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("weight", sa.Double, nullable=False),
    sa.Column("is_control", sa.Boolean, nullable=False),
    sa.Column("config", JSONDoc, nullable=False),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("unit_id", UnitId, primary_key=True),
    sa.Column("variant", Key, nullable=False),
    sa.Column("period", sa.Integer, nullable=False),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
)

exposed_units = sa.Table(
    "exposed_units",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("unit_id", UnitId, primary_key=True),
)

unit_metrics = sa.Table(
    "unit_metrics",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("unit_id", UnitId, primary_key=True),
    sa.Column("metric", Key, primary_key=True),
    sa.Column("count", Counter, nullable=False),
    sa.Column("total", sa.Double, nullable=False),
)

variant_counters = sa.Table(
    "variant_counters",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("variant", Key, primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("assigned_units", Counter, nullable=False),
    sa.Column("exposures", Counter, nullable=False),
    sa.Column("unique_units", Counter, nullable=False),
    # When the last event counted here was received (NULL before migration 0004, or for a row
    # only assignments touched): the experiment's last event time is the latest over its rows.
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
)

metric_counters = sa.Table(
    "metric_counters",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("variant", Key, primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("metric", Key, primary_key=True),
    sa.Column("count", Counter, nullable=False),
    sa.Column("units", Counter, nullable=False),
    sa.Column("sum", sa.Double, nullable=False),
    sa.Column("sum_squares", sa.Double, nullable=False),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("event_id", UnitId, primary_key=True),
    # When the id was claimed (its batch's received_at): the dedupe window prunes by it (0008).
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_processed_events_processed_at", "processed_at"),
)

daily_metrics = sa.Table(
    "daily_metrics",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("variant", Key, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("impressions", Counter, nullable=False),
    sa.Column("clicks", Counter, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

raw_metrics = sa.Table(
    "raw_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", Id, nullable=False, index=True),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

allocations = sa.Table(
    "allocations",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("weights", JSONDoc, nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("seed", sa.BigInteger),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("details", JSONDoc, nullable=False),
)

# Contextual bandits: the decision log, the feedback applied to it (once per event), and the
# counts behind each (context, arm) posterior ("*" pools every context).
ContextKey = sa.String(500)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("id", Key, primary_key=True),
    sa.Column("unit_id", UnitId),
    sa.Column("context_key", ContextKey, nullable=False),
    sa.Column("context", sa.Text, nullable=False),  # JSON object, written by the store
    sa.Column("arm", Key, nullable=False),
    sa.Column("propensity", sa.Double, nullable=False),
    sa.Column("policy", sa.String(32), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("successes", Counter, nullable=False),
    sa.Column("failures", Counter, nullable=False),
    sa.Column("rating", sa.Double),  # the value of the rating feedback applied to it (0005)
    sa.Index("ix_decisions_experiment_id_decided_at", "experiment_id", "decided_at"),
    # A unit's latest decision, for feedback that names the unit (0005).
    sa.Index(
        "ix_decisions_experiment_id_unit_id_decided_at", "experiment_id", "unit_id", "decided_at"
    ),
)

decision_feedback = sa.Table(
    "decision_feedback",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("decision_id", Key, primary_key=True),
    sa.Column("event", Key, primary_key=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

bandit_states = sa.Table(
    "bandit_states",
    metadata,
    sa.Column("experiment_id", Id, primary_key=True),
    sa.Column("context_key", ContextKey, primary_key=True),
    sa.Column("arm", Key, primary_key=True),
    sa.Column("pulls", Counter, nullable=False),
    sa.Column("successes", Counter, nullable=False),
    sa.Column("failures", Counter, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

PER_EXPERIMENT_TABLES = (
    variants,
    assignments,
    exposed_units,
    unit_metrics,
    variant_counters,
    metric_counters,
    processed_events,
    daily_metrics,
    raw_metrics,
    allocations,
    decisions,
    decision_feedback,
    bandit_states,
)

# Shared documents (FeatureVisor datafiles): global, not per experiment.
documents = sa.Table(
    "documents",
    metadata,
    sa.Column("namespace", Key, primary_key=True),
    sa.Column("key", sa.String(1000), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("digest", sa.String(128), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)
