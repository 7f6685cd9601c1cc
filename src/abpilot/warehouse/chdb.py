"""ClickHouse in process: a SQLAlchemy dialect ``clickhousedb+chdb:///path`` that is
clickhouse-connect's ClickHouse dialect (``clickhousedb``: its SQL compiler, its types) on
chDB's DB-API (``chdb.dbapi``, which binds ``%(name)s`` parameters by escaping them as
ClickHouse literals). The plan's ClickHouse overrides (``dialects.py``) apply to it as to a
ClickHouse server reached through ``clickhousedb://``.

Imported (and registered) by ``engine.open_engine`` for a ``clickhousedb+chdb`` URL."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.cc_sqlalchemy.dialect import ClickHouseDialect
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.sql.compiler import SQLCompiler

_BASE: Any = ClickHouseDialect.statement_compiler


class _Compiler(_BASE):  # type: ignore[misc]
    """Bound parameters as ``%(name)s`` for chDB's DB-API (clickhouse-connect's compiler
    renders them for its own client)."""

    def bindparam_string(self, name: str, **kw: Any) -> str:
        return SQLCompiler.bindparam_string(self, name, **kw)


class ChdbDialect(ClickHouseDialect):
    driver = "chdb"
    paramstyle = "pyformat"
    default_paramstyle = "pyformat"
    statement_compiler = _Compiler
    supports_statement_cache = False

    @classmethod
    def import_dbapi(cls) -> Any:
        import types

        import chdb.dbapi
        import chdb.dbapi.err

        # chdb.dbapi keeps the PEP 249 exceptions in its ``err`` module; SQLAlchemy looks for
        # them on the DB-API module.
        module = types.SimpleNamespace(**vars(chdb.dbapi))
        for name in dir(chdb.dbapi.err):
            if name.endswith("Error") or name == "Warning":
                setattr(module, name, getattr(chdb.dbapi.err, name))
        return module

    # clickhouse-connect executes through its own HTTP client; chDB through its cursor.
    do_execute = DefaultDialect.do_execute
    do_executemany = DefaultDialect.do_executemany
    do_execute_no_params = DefaultDialect.do_execute_no_params

    def _get_default_schema_name(self, connection: Any) -> str:
        return "default"

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        path = url.database or ""
        return [], {"path": path} if path else {}

    def do_ping(self, dbapi_connection: Any) -> bool:
        return True

    def get_isolation_level(self, dbapi_connection: Any) -> Any:
        return "AUTOCOMMIT"

    def do_rollback(self, dbapi_connection: Any) -> None:
        return None

    def do_commit(self, dbapi_connection: Any) -> None:
        return None


def connect(path: str) -> Any:
    """A chDB DB-API connection on the data at ``path`` (for loading tables directly)."""
    import chdb.dbapi

    return chdb.dbapi.connect(path=path)  # type: ignore[no-untyped-call]


registry.register("clickhousedb.chdb", "abpilot.warehouse.chdb", "ChdbDialect")
