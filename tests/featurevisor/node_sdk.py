"""Run the OFFICIAL FeatureVisor JavaScript SDKs and CLI from Python tests.

The packages are pinned in ``node/package.json`` / ``node/package-lock.json``. Both SDK majors sit
side by side under npm aliases: ``fv-sdk1`` is ``@featurevisor/sdk@^1`` and ``fv-sdk2`` is
``@featurevisor/sdk@^2``; ``@featurevisor/cli`` is 1.11.1 (a v1-schema datafile builder).

Tests call :func:`require_node` first. The first call in a test run installs the packages from the
npm registry with ``npm ci`` when ``node_modules`` is missing or older than the lock file (see
:func:`install_problem`; pytest-xdist workers take turns through a file lock, so one installs and
the others find it done). Without Node, npm or a working install it skips with the reason, and with
``CI=true`` it fails instead, so CI can never pass by skipping these tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock, Timeout

NODE_DIR = Path(__file__).resolve().parent / "node"
EVALUATE_MJS = NODE_DIR / "evaluate.mjs"
FEATUREVISOR_CLI = NODE_DIR / "node_modules" / ".bin" / "featurevisor"

TIMEOUT_S = 120
NPM_CI_TIMEOUT_S = 600
LOCK_TIMEOUT_S = NPM_CI_TIMEOUT_S + 60  # a waiting worker outlasts another's whole `npm ci`
INSTALL_STAMP = Path("node_modules") / ".abpilot-npm-ci"
"""Written after a successful ``npm ci``: the digest of the package files it installed."""
INSTALL_LOCK = ".npm-ci.lock"
MIN_NODE_MAJOR = 18  # evaluate.mjs uses node:util parseArgs
# Same convention as tests/conftest.py.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_REQUIRED_PACKAGES = ("fv-sdk1", "fv-sdk2", "@featurevisor/cli")


class NodeHarnessError(RuntimeError):
    """evaluate.mjs or the FeatureVisor CLI failed; the message carries its stderr."""


@functools.cache
def node_available() -> str | None:
    """``None`` when Node, npm and the installed packages are all there, else the reason.

    Installs the packages first when they are missing or stale (:func:`install_problem`).
    """
    node = shutil.which("node")
    if node is None:
        return "node is not on PATH (install Node.js >= 18)"
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH"
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"`node --version` failed: {error}"
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        return f"cannot read the node version from {version!r}"
    if major < MIN_NODE_MAJOR:
        return f"node {version} is too old; evaluate.mjs needs node >= {MIN_NODE_MAJOR}"
    problem = install_problem(NODE_DIR, npm)
    if problem is not None:
        return problem
    for package in _REQUIRED_PACKAGES:
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            return f"`npm ci` did not install the npm package {package} in {NODE_DIR}"
    if not FEATUREVISOR_CLI.exists():
        return f"`npm ci` did not install {FEATUREVISOR_CLI}"
    return None


def package_digest(node_dir: Path) -> str:
    """The digest of ``package.json`` and ``package-lock.json``: what ``npm ci`` installs."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((node_dir / name).read_bytes())
    return digest.hexdigest()


def installed(node_dir: Path) -> bool:
    """``node_modules`` was installed by :func:`install_problem` from the current lock file."""
    stamp = node_dir / INSTALL_STAMP
    return stamp.is_file() and stamp.read_text().strip() == package_digest(node_dir)


def install_problem(node_dir: Path, npm: str) -> str | None:
    """Run ``npm ci`` in ``node_dir`` unless its ``node_modules`` is current; ``None`` when it is
    ready, else why not.

    One process installs at a time: the others wait on a file lock and then find the packages
    installed. ``node_modules`` without the stamp (installed by hand, or an ``npm ci`` that was
    cut short) is installed again, once.
    """
    if installed(node_dir):
        return None
    try:
        with FileLock(node_dir / INSTALL_LOCK, timeout=LOCK_TIMEOUT_S):
            if installed(node_dir):  # another process installed them while this one waited
                return None
            args = [npm, "ci", "--no-audit", "--no-fund"]
            try:
                done = _run(args, cwd=node_dir, timeout=NPM_CI_TIMEOUT_S)
            except NodeHarnessError as error:
                return str(error)
            if done.returncode != 0:
                output = (done.stderr.strip() or done.stdout.strip())[-2000:]
                return f"`npm ci` in {node_dir} exited {done.returncode}: {output}"
            (node_dir / INSTALL_STAMP).write_text(package_digest(node_dir) + "\n")
            return None
    except Timeout:
        return f"another process held {node_dir / INSTALL_LOCK} for over {LOCK_TIMEOUT_S} s"


def require_node() -> None:
    """Skip the calling test when the Node harness is missing; fail instead under ``CI=true``."""
    reason = node_available()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the FeatureVisor Node harness is unavailable: {reason}")
    pytest.skip(f"FeatureVisor Node harness unavailable: {reason}")


def _run(
    args: list[str], cwd: Path, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise NodeHarnessError(f"{args[:3]} timed out after {timeout} s") from error
    except OSError as error:
        raise NodeHarnessError(f"{args[:3]} could not start: {error}") from error


def evaluate(
    sdk_major: int,
    datafile: Path,
    feature: str,
    users: int,
    attributes: dict[str, Any] | None = None,
    dump: bool = False,
    prefix: str = "user-",
) -> dict[str, Any]:
    """Evaluate users ``f"{prefix}{i}"`` (i < ``users``) with the official SDK ``sdk_major``.

    Returns evaluate.mjs's JSON: ``{"sdk": "@featurevisor/sdk@x.y.z", "counts": {variation: n,
    ..., "null": n}}`` plus ``"variations"`` (one per user, ``None`` for none) when ``dump``.
    """
    if sdk_major not in (1, 2):
        raise ValueError(f"sdk_major must be 1 or 2, not {sdk_major}")
    args = [
        "node",
        str(EVALUATE_MJS),
        "--sdk",
        str(sdk_major),
        "--datafile",
        str(Path(datafile).resolve()),
        "--feature",
        feature,
        "--users",
        str(users),
        "--prefix",
        prefix,
        "--attributes",
        json.dumps(attributes or {}),
    ]
    if dump:
        args.append("--dump")
    done = _run(args, cwd=NODE_DIR)
    if done.returncode != 0:
        raise NodeHarnessError(
            f"evaluate.mjs exited {done.returncode}: {done.stderr.strip() or '(no stderr)'}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _make_writable(tree: Path) -> None:
    # A checkout may be read-only and copytree keeps modes; the CLI writes dist/ and .featurevisor/.
    for path in [tree, *tree.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR | (stat.S_IXUSR if path.is_dir() else 0))


def build_v1_project(source: Path, workdir: Path) -> Path:
    """Copy the FeatureVisor project ``source`` into ``workdir`` and build it with CLI 1.11.1.

    Returns the ``dist`` directory of the copy, which holds one folder per environment with
    one datafile per tag: ``dist/<environment>/datafile-tag-<tag>.json`` (schemaVersion "1").
    The build starts from scratch (no earlier ``.featurevisor`` state or ``dist`` is copied).
    """
    if not (source / "featurevisor.config.js").is_file():
        raise NodeHarnessError(
            f"{source} is not a FeatureVisor project (no featurevisor.config.js)"
        )
    project = workdir / source.name
    shutil.copytree(source, project, ignore=shutil.ignore_patterns("dist", ".featurevisor"))
    _make_writable(project)
    done = _run([str(FEATUREVISOR_CLI), "build"], cwd=project)
    dist = project / "dist"
    if done.returncode != 0:
        raise NodeHarnessError(
            f"featurevisor build exited {done.returncode}:\n{done.stdout}\n{done.stderr}".strip()
        )
    if not any(dist.glob("*/datafile-tag-*.json")):
        raise NodeHarnessError(
            f"featurevisor build wrote no datafiles under {dist}:\n{done.stdout}"
        )
    return dist
