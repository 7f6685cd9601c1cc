"""The test run installs the Node harness itself: ``npm ci`` once, when ``node_modules`` is missing
or older than the lock file, with pytest-xdist workers taking turns.

A fake ``npm`` stands in for the real one: it logs each call in ``npm.log``, fails when a file
``fail`` exists and waits while a file ``hold`` exists.
"""

from __future__ import annotations

import stat
import sys
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

from tests.featurevisor.node_sdk import INSTALL_STAMP, install_problem, installed
from tests.processes import process_context

FAKE_NPM = """\
import pathlib, sys, time
cwd = pathlib.Path.cwd()
with open(cwd / "npm.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if (cwd / "fail").exists():
    sys.exit("npm ERR! 404 Not Found - GET https://registry.npmjs.org/fv-sdk9")
while (cwd / "hold").exists():
    time.sleep(0.01)
(cwd / "node_modules").mkdir(exist_ok=True)
"""


def harness(tmp_path: Path) -> tuple[Path, str]:
    """A node directory with its package files, and the path of the fake npm."""
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    (node_dir / "package.json").write_text('{"dependencies": {"fv-sdk2": "npm:x@^2"}}\n')
    (node_dir / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}\n')
    npm = tmp_path / "npm"
    npm.write_text(f"#!{sys.executable}\n{FAKE_NPM}")
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    return node_dir, str(npm)


def npm_calls(node_dir: Path) -> list[str]:
    log = node_dir / "npm.log"
    return log.read_text().splitlines() if log.exists() else []


def test_npm_ci_runs_when_node_modules_is_missing_and_not_again(tmp_path: Path) -> None:
    node_dir, npm = harness(tmp_path)
    assert not installed(node_dir)
    assert install_problem(node_dir, npm) is None
    assert npm_calls(node_dir) == ["ci --no-audit --no-fund"]
    assert installed(node_dir)
    assert install_problem(node_dir, npm) is None
    assert npm_calls(node_dir) == ["ci --no-audit --no-fund"]  # current: nothing to do


def test_node_modules_of_an_older_lock_file_or_installed_by_hand_is_installed_again(
    tmp_path: Path,
) -> None:
    node_dir, npm = harness(tmp_path)
    (node_dir / "node_modules").mkdir()  # `npm ci` by hand leaves no stamp
    assert install_problem(node_dir, npm) is None
    assert len(npm_calls(node_dir)) == 1
    (node_dir / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {"a": {}}}\n')
    assert not installed(node_dir)
    assert install_problem(node_dir, npm) is None
    assert len(npm_calls(node_dir)) == 2
    assert installed(node_dir)


def test_a_failed_npm_ci_is_the_reason_and_is_tried_again_next_time(tmp_path: Path) -> None:
    node_dir, npm = harness(tmp_path)
    (node_dir / "fail").touch()
    reason = install_problem(node_dir, npm)
    assert reason is not None
    assert reason.startswith(f"`npm ci` in {node_dir} exited 1: ")
    assert reason.endswith("npm ERR! 404 Not Found - GET https://registry.npmjs.org/fv-sdk9")
    assert not (node_dir / INSTALL_STAMP).exists()
    (node_dir / "fail").unlink()
    assert install_problem(node_dir, npm) is None
    assert len(npm_calls(node_dir)) == 2


def _install(node_dir: Path, npm: str, calling: Event, results: Queue[str | None]) -> None:
    calling.set()
    results.put(install_problem(node_dir, npm))


def test_two_test_processes_at_once_run_npm_ci_once(tmp_path: Path) -> None:
    node_dir, npm = harness(tmp_path)
    (node_dir / "hold").touch()
    context = process_context()
    results: Queue[str | None] = context.Queue()
    first_calling, second_calling = context.Event(), context.Event()
    first = context.Process(target=_install, args=(node_dir, npm, first_calling, results))
    first.start()
    deadline = time.monotonic() + 60  # against a hang only
    while not npm_calls(node_dir):  # the first process is inside `npm ci`, holding the lock
        assert time.monotonic() < deadline, "the first process never ran npm"
        time.sleep(0.01)
    second = context.Process(target=_install, args=(node_dir, npm, second_calling, results))
    second.start()
    assert second_calling.wait(timeout=60)  # it finds node_modules missing, as the first did
    (node_dir / "hold").unlink()
    outcomes = [results.get(timeout=60), results.get(timeout=60)]
    first.join(timeout=60)
    second.join(timeout=60)
    assert outcomes == [None, None]
    assert npm_calls(node_dir) == ["ci --no-audit --no-fund"]
    assert installed(node_dir)
