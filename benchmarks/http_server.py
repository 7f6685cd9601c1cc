"""Serve ``benchmarks.http_app:create`` the way ``abpilot serve`` serves abpilot's app.

``python -m benchmarks.http_server --port P [--workers N]`` reads the store from the environment
(``STORE``, ``DATABASE_URL``, ``REDIS_URL``, ``REDIS_PREFIX``: the README's configuration), migrates
a SQL store once in this process (as ``abpilot serve`` does, so the workers do not all migrate),
then runs uvicorn with the same options as ``abpilot serve``: the app factory, N worker
processes, log level ``info`` (so the access log is on, as in production).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import uvicorn

from abpilot.settings import get_settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ["HOST"], os.environ["PORT"] = args.host, str(args.port)
    settings = get_settings()
    if settings.store == "sql":
        from abpilot.store.sql import SqlStore

        SqlStore.from_url(settings.database_url).close()
    uvicorn.run(
        "benchmarks.http_app:create",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="debug" if settings.debug else "info",
    )


if __name__ == "__main__":
    main()
