"""SQL store details that only show under concurrency: a lost race for a key is a DuplicateKey,
and a leader's lease leaves no transaction open."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from abpilot.domain.errors import DuplicateKey
from abpilot.store.factory import open_store
from abpilot.store.sql import SqlStore
from tests.conftest import backend_url
from tests.factories import make_experiment


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_key_taken_between_check_and_insert_is_a_duplicate_key(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend_url(backend, tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        store.create_experiment(make_experiment("checkout"))
        # Lose the race: the other worker's insert lands after this one's check.
        monkeypatch.setattr(SqlStore, "_check_key_free", lambda self, conn, key, own_id: None)
        with pytest.raises(DuplicateKey):
            store.create_experiment(make_experiment("checkout"))
        assert len(store.list_experiments()) == 1
        store.close()


def test_a_postgres_lease_keeps_no_transaction_open(tmp_path: Path) -> None:
    with backend_url("postgres", tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        lease = store.try_lead("recalculate", ttl_seconds=30)
        assert lease is not None
        assert lease.renew()
        with store.engine.connect() as conn:
            states = conn.execute(
                sa.text(
                    "SELECT state FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE 'SELECT 1%'"
                )
            ).scalars()
            assert "idle in transaction" not in list(states)
        lease.release()
        store.close()
