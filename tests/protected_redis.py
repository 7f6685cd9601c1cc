"""A password-protected ``redis-server`` of the test's own, as FeatureVisor Pilot's docker-compose
runs one (``--requirepass``): on a free port, no persistence, killed afterwards. Without
``redis-server`` the test is skipped with the reason (it fails under ``CI=true``)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import IN_CI
from tests.e2e.server import free_port

READY_SECONDS = 20.0


@dataclass(frozen=True)
class ProtectedRedis:
    port: int
    password: str

    def client(self, password: str | None = None, db: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            password=self.password if password is None else password,
            decode_responses=True,
            socket_connect_timeout=2,
        )


@contextlib.contextmanager
def protected_redis(password: str, log_dir: Path) -> Iterator[ProtectedRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not on PATH; install Redis to run the REDIS_PASSWORD test"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    port = free_port()
    with (log_dir / f"redis-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--requirepass", password,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = ProtectedRedis(port, password)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            client = redis.Redis(host="127.0.0.1", port=port, password=password)
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"redis-server on port {port} did not start (log in {log_dir})"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()
        yield server
    finally:
        process.kill()
        process.wait(timeout=10)
