"""Shared documents (FeatureVisor datafiles) for the SQL store.

A put is one ``INSERT .. ON CONFLICT DO UPDATE .. WHERE digest changed``: the database bumps the
version itself, so concurrent puts of one key get consecutive versions without a read in Python
first. When the digest is unchanged nothing is updated (PostgreSQL still locks the row) and the
stored row is read back in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from abpilot.store.base import Document
from abpilot.store.codec import as_utc
from abpilot.store.sql.common import guarded
from abpilot.store.sql.schema import documents


class SqlDocuments:
    """Mixed into ``SqlStore``: needs ``engine``, ``_insert`` and ``_write``."""

    engine: sa.Engine
    _insert: Any
    _write: Callable[[], AbstractContextManager[sa.Connection]]

    @guarded
    def put_document(
        self, namespace: str, key: str, content: str, digest: str, updated_at: datetime
    ) -> Document:
        stmt = self._insert(documents).values(
            namespace=namespace,
            key=key,
            content=content,
            digest=digest,
            # SQLite keeps no time zone: write UTC, as as_utc assumes when reading back.
            updated_at=as_utc(updated_at),
            version=1,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[documents.c.namespace, documents.c.key],
            set_={
                "content": stmt.excluded.content,
                "digest": stmt.excluded.digest,
                "updated_at": stmt.excluded.updated_at,
                "version": documents.c.version + 1,
            },
            where=documents.c.digest != stmt.excluded.digest,
        ).returning(*documents.c)
        with self._write() as conn, conn.begin():
            row = conn.execute(stmt).mappings().first()
            if row is None:  # same digest: nothing written, the row is ours to read
                row = conn.execute(_select(namespace, key)).mappings().one()
            return _document(row)

    @guarded
    def get_document(self, namespace: str, key: str) -> Document | None:
        with self.engine.connect() as conn:
            row = conn.execute(_select(namespace, key)).mappings().first()
            return None if row is None else _document(row)

    @guarded
    def list_documents(self, namespace: str) -> list[Document]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(documents).where(documents.c.namespace == namespace)
            ).mappings()
            found = [_document(r) for r in rows]
        # Sorted here, not by ORDER BY: a database collation may not be code point order.
        return sorted(found, key=lambda d: d.key)

    @guarded
    def delete_document(self, namespace: str, key: str) -> bool:
        with self._write() as conn, conn.begin():
            deleted = conn.execute(
                documents.delete().where(documents.c.namespace == namespace, documents.c.key == key)
            )
            return deleted.rowcount > 0


def _select(namespace: str, key: str) -> sa.Select[Any]:
    return sa.select(documents).where(documents.c.namespace == namespace, documents.c.key == key)


def _document(row: Any) -> Document:
    return Document(
        namespace=row["namespace"],
        key=row["key"],
        content=row["content"],
        digest=row["digest"],
        updated_at=as_utc(row["updated_at"]),
        version=int(row["version"]),
    )
