"""Alembic environment: runs on the connection abpilot hands over, or on ``sqlalchemy.url``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from abpilot.store.sql.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def run(conn: sa.Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=True,
        # PostgreSQL: a transaction per revision (see abpilot.store.sql.engine.upgrade).
        transaction_per_migration=bool(config.attributes.get("transaction_per_migration")),
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        run(conn)
