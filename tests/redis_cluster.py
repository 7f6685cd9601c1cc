"""A real local Redis Cluster for the tests: three masters, each with one replica, on free ports.

``cluster_url()`` starts it on first use (one per test process: each pytest-xdist worker has its
own) and the session fixture ``redis_cluster`` in ``tests/conftest.py`` stops it at the end.
Without ``redis-server`` the tests that need it are skipped with the reason; under ``CI=true``
they fail instead.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MASTERS = 3
REPLICAS = 1
START_TIMEOUT = 60.0


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` consecutive free ports below 45535 whose bus ports (+10000) are free too."""
    for _ in range(200):
        base = random.randrange(20000, 45535 - count)
        ports = list(range(base, base + count))
        if all(_free(p) and _free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no free ports for a local Redis Cluster")


class LocalCluster:
    """redis-server processes started with ``--cluster-enabled yes`` and joined by
    ``redis-cli --cluster create``."""

    def __init__(self) -> None:
        self.ports = _free_ports(MASTERS * (1 + REPLICAS))
        self.folder = Path(tempfile.mkdtemp(prefix="abp-cluster-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.commands: dict[int, list[str]] = {}

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        for port in self.ports:
            folder = self.folder / str(port)
            folder.mkdir()
            command = [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
                "--cluster-allow-replica-migration", "no",  # an emptied master stays one
                "--save", "",
                "--appendonly", "no",
                "--dir", str(folder),
                "--logfile", str(folder / "redis.log"),
            ]  # fmt: skip
            self.commands[port] = command
            self.processes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in self.ports:
            self._wait(lambda p=port: self.cli(p, "ping") == "PONG")
        self.run(
            "--cluster", "create",
            *(f"127.0.0.1:{p}" for p in self.ports),
            "--cluster-replicas", str(REPLICAS),
            "--cluster-yes",
        )  # fmt: skip
        for port in self.ports:
            self._wait(lambda p=port: "cluster_state:ok" in self.cli(p, "cluster", "info"))
        self._wait(self._replicas_in_sync)

    def _replicas_in_sync(self) -> bool:
        roles = [self.cli(p, "role").split() for p in self.ports]
        return sum(1 for r in roles if r and r[0] == "slave") == MASTERS * REPLICAS

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip()

    def run(self, *args: str, timeout: float = 300.0) -> str:
        """``redis-cli`` with ``args`` against the first node; its output (it must succeed)."""
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.ports[0]), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def masters(self) -> dict[str, int]:
        """Node id -> port of every master."""
        found = {}
        for line in self.cli(self.ports[0], "cluster", "nodes").splitlines():
            node_id, address, flags, *_ = line.split()
            if "master" in flags.split(","):
                found[node_id] = int(address.split("@")[0].rsplit(":", 1)[1])
        return found

    def slot_owner(self, slot: int) -> str:
        """The id of the master that serves ``slot``."""
        for line in self.cli(self.ports[0], "cluster", "nodes").splitlines():
            node_id, _, flags, *rest = line.split()
            if "master" not in flags.split(","):
                continue
            for part in rest[5:]:
                if part.startswith("["):
                    continue
                low, _, high = part.partition("-")
                if int(low) <= slot <= int(high or low):
                    return node_id
        raise LookupError(f"no master serves slot {slot}")

    def slot_owner_port(self, slot: int) -> int:
        """The port of the master serving ``slot``, as a node still alive sees it."""
        for port in self.ports:
            if self.processes[self.ports.index(port)].poll() is not None:
                continue
            for line in self.cli(port, "cluster", "nodes").splitlines():
                _, address, flags, *rest = line.split()
                if "master" not in flags.split(",") or "fail" in flags.split(","):
                    continue
                for part in rest[5:]:
                    if part.startswith("["):
                        continue
                    low, _, high = part.partition("-")
                    if int(low) <= slot <= int(high or low):
                        return int(address.split("@")[0].rsplit(":", 1)[1])
            break
        return -1

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a crash: nothing flushed, no goodbye to the others)."""
        process = self.processes[self.ports.index(port)]
        process.kill()
        process.wait()

    def restart(self, port: int) -> None:
        """Start the node on ``port`` again from its nodes.conf: it rejoins the cluster (a
        former master whose replica took over comes back as that replica's replica)."""
        self.processes[self.ports.index(port)] = subprocess.Popen(
            self.commands[port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait(lambda: self.cli(port, "ping") == "PONG")

    def slot_count(self, node: str) -> int:
        """How many slots the master ``node`` serves."""
        for line in self.cli(self.ports[0], "cluster", "nodes").splitlines():
            node_id, _, _, *rest = line.split()
            if node_id == node:
                ranges = [p for p in rest[5:] if not p.startswith("[")]
                return sum(
                    int(p.partition("-")[2] or p) - int(p.partition("-")[0]) + 1 for p in ranges
                )
        raise LookupError(f"no node {node}")

    def agreed(self) -> bool:
        """Every node has the same slot configuration (gossip has spread the last change):
        ``redis-cli --cluster reshard`` refuses to start until then."""
        done = subprocess.run(
            ["redis-cli", "--cluster", "check", f"127.0.0.1:{self.ports[0]}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return "All nodes agree about slots configuration" in done.stdout

    def reshard(self, source: str, to: str, slots: int) -> str:
        """``redis-cli --cluster reshard``: move ``slots`` slots from ``source`` to ``to``, once
        every node agrees on the configuration (right after a previous move they may not)."""
        self._wait(self.agreed)
        return self.run(
            "--cluster", "reshard", f"127.0.0.1:{self.ports[0]}",
            "--cluster-from", source,
            "--cluster-to", to,
            "--cluster-slots", str(slots),
            "--cluster-yes",
            "--cluster-pipeline", "50",
        )  # fmt: skip

    def _wait(self, ready: object) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                if callable(ready) and ready():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the local Redis Cluster did not come up (logs in {self.folder})")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


_RUNNING: list[LocalCluster] = []


def missing_reason() -> str | None:
    """Why no local cluster can be started here, or None."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; install Redis to run the Redis Cluster tests"
    return None


def local_cluster() -> LocalCluster:
    """The test process's cluster, started on first use."""
    if not _RUNNING:
        cluster = LocalCluster()
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _RUNNING.append(cluster)
    return _RUNNING[0]


def stop_local_cluster() -> None:
    while _RUNNING:
        _RUNNING.pop().stop()


@contextlib.contextmanager
def master_with_replica() -> Iterator[str]:
    """A redis-server master and its replica on free ports (no cluster); the master's URL.
    ``replica_port`` finds the replica."""
    master, replica = _free_ports(2)
    folder = Path(tempfile.mkdtemp(prefix="abp-wait-"))
    processes = []
    # No delay before the first sync (Redis waits 5 s for more replicas by default).
    first = ["--repl-diskless-sync-delay", "0"]
    for port, extra in ((master, first), (replica, ["--replicaof", "127.0.0.1", str(master)])):
        command = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder), *extra,
        ]  # fmt: skip
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            role = subprocess.run(
                ["redis-cli", "-p", str(replica), "role"], capture_output=True, text=True
            ).stdout.split()
            if role[:1] == ["slave"] and "connected" in role:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the replica did not connect")
        yield f"redis://127.0.0.1:{master}/0"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def replica_port(master_url: str) -> int:
    """The port of the (one) replica connected to the master at ``master_url``."""
    port = master_url.rsplit(":", 1)[1].split("/")[0]
    info = subprocess.run(
        ["redis-cli", "-p", port, "info", "replication"], capture_output=True, text=True
    ).stdout
    for line in info.splitlines():
        if line.startswith("slave0:"):
            fields = dict(part.split("=", 1) for part in line.split(":", 1)[1].split(","))
            return int(fields["port"])
    raise RuntimeError(f"no replica is connected to {master_url}")
