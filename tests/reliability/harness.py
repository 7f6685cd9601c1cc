"""Processes the reliability tests start and stop: `abpilot serve` in its own process group (so a
SIGKILL takes its uvicorn workers too), and throwaway Redis and PostgreSQL servers that a test
may stop and start again (never the shared ones)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.conftest import IN_CI
from tests.e2e.server import free_port

READY_SECONDS = 40.0


def missing(reason: str) -> NoReturn:
    """Skip locally; fail under CI=true, where nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def store_env(backend: str, url: str, options: dict[str, Any]) -> dict[str, str]:
    """The environment that points `abpilot serve` at a store from ``backend_url``."""
    if backend == "redis":
        return {"STORE": "redis", "REDIS_URL": url, "REDIS_PREFIX": options["prefix"]}
    if backend == "redis-cluster":  # any node, with REDIS_CLUSTER=true (the README's way)
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        return {
            "STORE": "redis",
            "REDIS_CLUSTER": "true",
            "REDIS_HOST": host,
            "REDIS_PORT": port,
            "REDIS_PREFIX": options["prefix"],
        }
    return {"STORE": "sql", "DATABASE_URL": url}


def wait_until(condition: Any, *, seconds: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(interval)


def answers(url: str, status: int = 200) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == status
    except httpx.TransportError:
        return False


class Service:
    """`abpilot serve` on a fixed port, startable again on the same port after a kill."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str, port: int | None = None):
        self.env, self.cwd, self.args = env, cwd, args
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"server-{self.port}.log"
        self.workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self, *, wait: bool = True) -> Service:
        command = shutil.which("abpilot") or f"{sys.executable} -m abpilot"
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:  # appended to across restarts
            self.process = subprocess.Popen(
                [*command.split(), "serve", "--port", str(self.port), *self.args],
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the workers die with it
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Until /readyz answers and every worker has started (the first one to start answers
        /readyz while the others may still be starting up)."""
        deadline = time.monotonic() + READY_SECONDS
        while not (answers(f"{self.url}/readyz") and self._started_workers() >= self.workers):
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"abpilot serve exited early; see {self.log_path}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"abpilot serve was not ready ({self._started_workers()} of {self.workers} "
                    f"workers started); see {self.log_path}"
                )
            time.sleep(0.05)

    def _started_workers(self) -> int:
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().count(b"Application startup complete.")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: the supervisor and every uvicorn worker."""
        self._signal(signal.SIGKILL, timeout=10)

    def stop(self) -> None:
        if self.alive:
            self._signal(signal.SIGTERM, timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError, AttributeError):
            # Workers left over by a supervisor that died first.
            os.killpg(self.process.pid, signal.SIGKILL)  # type: ignore[union-attr]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, sig: signal.Signals, *, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path, *args: str) -> Iterator[Service]:
    service = Service(env, cwd, *args).start()
    try:
        yield service
    finally:
        service.stop()


# throwaway Redis -------------------------------------------------------------------------------


class ThrowawayRedis:
    """A redis-server of the test's own on a free port, with an append-only file fsynced on
    every write (so a SIGKILL loses nothing acknowledged) and no RDB snapshots."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not on PATH; install Redis to run the store outage test")
        self.binary = str(binary)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "yes",
                    "--appendfsync", "always",
                    "--dir", str(self.directory),
                    "--daemonize", "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        import redis

        def up() -> bool:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        wait_until(up, seconds=20, what=f"redis-server on port {self.port} answering")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def throwaway_redis(directory: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# throwaway PostgreSQL --------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: PATH, pg_config, or the newest Debian-style install."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidate = Path(found.stdout.strip())
        if found.returncode == 0 and (candidate / "initdb").exists():
            return candidate
    installs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(installs[-1]).parent if installs else None


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl) on a free port, its unix socket
    in its own directory. PostgreSQL refuses to run as root: as root the cluster belongs to the
    ``postgres`` user."""

    def __init__(self) -> None:
        bindir = _postgres_bindir()
        if bindir is None:
            missing("PostgreSQL server binaries (initdb, pg_ctl) were not found")
        self.bindir = bindir
        self.run_as: dict[str, Any] = {}
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and there is no 'postgres' user to run PostgreSQL as")
            self.run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        # A short path of its own: the socket path must stay under ~100 characters, and
        # pytest's tmp_path is private to the user running the tests.
        self.root = Path(tempfile.mkdtemp(prefix="abpilot-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=60,
            **self.run_as,
        )
        if done.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            output = f"{done.stderr}{done.stdout}"
            raise AssertionError(f"{args[0]} failed ({done.returncode}): {output}\n{tail}")

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip

    def crash(self) -> None:
        """Stop at once, as a crash would (no checkpoint; recovery from WAL on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(AssertionError, OSError, subprocess.SubprocessError):
            if (self.data / "postmaster.pid").exists():
                self.crash()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()
