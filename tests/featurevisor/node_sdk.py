"""Run the OFFICIAL FeatureVisor JavaScript SDKs and CLI from Python tests.

The packages are pinned in ``node/package.json`` / ``node/package-lock.json`` and installed from
the npm registry with ``npm ci`` (``.ci/run`` does it). Both SDK majors sit side by side under npm
aliases: ``fv-sdk1`` is ``@featurevisor/sdk@^1`` and ``fv-sdk2`` is ``@featurevisor/sdk@^2``;
``@featurevisor/cli`` is 1.11.1 (a v1-schema datafile builder).

Tests call :func:`require_node` first: without Node or the installed packages it skips with the
reason, and with ``CI=true`` it fails instead, so CI can never pass by skipping these tests.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"
EVALUATE_MJS = NODE_DIR / "evaluate.mjs"
FEATUREVISOR_CLI = NODE_DIR / "node_modules" / ".bin" / "featurevisor"
SHARED_FEATUREVISOR = ROOT.parent / "shared" / "featurevisor"
SHARED_DATAFILES = SHARED_FEATUREVISOR / "datafiles"
SHARED_PROJECT_V1 = SHARED_FEATUREVISOR / "project-v1"

TIMEOUT_S = 120
MIN_NODE_MAJOR = 18  # evaluate.mjs uses node:util parseArgs
# Same convention as tests/conftest.py.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_REQUIRED_PACKAGES = ("fv-sdk1", "fv-sdk2", "@featurevisor/cli")


class NodeHarnessError(RuntimeError):
    """evaluate.mjs or the FeatureVisor CLI failed; the message carries its stderr."""


@functools.cache
def node_available() -> str | None:
    """``None`` when Node, npm and the installed packages are all there, else the reason."""
    node = shutil.which("node")
    if node is None:
        return "node is not on PATH (install Node.js >= 18)"
    if shutil.which("npm") is None:
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
    install_hint = f"run `npm ci` in {NODE_DIR}"
    for package in _REQUIRED_PACKAGES:
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            return f"the npm package {package} is not installed; {install_hint}"
    if not FEATUREVISOR_CLI.exists():
        return f"{FEATUREVISOR_CLI} is missing; {install_hint}"
    return None


def require_node() -> None:
    """Skip the calling test when the Node harness is missing; fail instead under ``CI=true``."""
    reason = node_available()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the FeatureVisor Node harness is unavailable: {reason}")
    pytest.skip(f"FeatureVisor Node harness unavailable: {reason}")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise NodeHarnessError(f"{args[:3]} timed out after {TIMEOUT_S} s") from error


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
    # shared/ is read-only and copytree keeps modes; the CLI must write dist/ and .featurevisor/.
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
