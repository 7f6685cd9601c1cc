"""Start the real `abpilot serve` in a subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(env: dict[str, str], cwd: Path, *args: str) -> Iterator[str]:
    """Run `abpilot serve` with ``env`` added to the environment; yield its base URL. A port
    taken between choosing it and the server binding it (another test's server) is retried on
    a new port."""
    command = shutil.which("abpilot") or f"{sys.executable} -m abpilot"
    for _attempt in range(3):
        port = free_port()
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks
        # the server on its access log.
        log = (cwd / f"server-{port}.log").open("wb")
        process = subprocess.Popen(
            [*command.split(), "serve", "--port", str(port), *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        if _ready(process, url, log.name):
            break
        log.close()
    else:
        raise AssertionError(f"no free port for the server after 3 tries: {log.name}")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(process: subprocess.Popen[bytes], url: str, log_name: str) -> bool:
    """Wait until the server answers /readyz; False if it exited because its port was taken."""
    for _ in range(600):
        if process.poll() is not None:
            if b"address already in use" in Path(log_name).read_bytes().lower():
                return False
            raise AssertionError(f"the server exited with {process.returncode}: {log_name}")
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"the server did not become ready in 60 s: {log_name}")
