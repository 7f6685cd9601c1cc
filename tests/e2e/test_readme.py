"""The README's walk-through runs as written: a real `abpilot serve` on SQLite, real curl."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import running_server

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def code_block(after_heading: str, language: str) -> str:
    section = README.split(after_heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {after_heading!r}"
    return match.group(1)


def run_curl(heading: str, server: str) -> subprocess.CompletedProcess[str]:
    """Run the bash block after ``heading`` against ``server``; every curl must succeed."""
    script = code_block(heading, "bash")
    script = script.replace("localhost:8000", server.removeprefix("http://"))
    script = script.replace("curl -s ", "curl -sS --fail-with-body ")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'readme.db'}", "STORE": "sql"}
    with running_server(env, tmp_path) as url:
        yield url


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_walk_through(server: str) -> None:
    run_curl("## Walk-through with curl", server)
    final = httpx.get(f"{server}/api/v1/experiments/checkout-button").json()
    assert (final["status"], final["winner"]) == ("completed", "green")
    metrics = httpx.get(f"{server}/api/v1/experiments/checkout-button/metrics").json()
    assert sum(v["unique_units"] for v in metrics["variants"]) == 2
    revenue = sum(v["metrics"]["revenue"]["sum"] for v in metrics["variants"])
    assert revenue == 42.5


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_bandit_walk_through(server: str) -> None:
    run_curl("## Bandits", server)
    base = f"{server}/api/v1/experiments/hero-banner"
    split = {
        a["variant_name"]: a["allocation_percentage"]
        for a in httpx.get(f"{base}/allocation").json()["allocations"]
    }
    assert split == {"control": 0.67, "variant_a": 91.92, "variant_b": 7.41}  # as the README says
    history = httpx.get(f"{base}/history").json()
    assert [c["period"] for c in history["weight_changes"]] == [1]
    assert history["weight_changes"][0]["weights"]["variant_a"] == 0.9192
    assert len(history["daily_metrics"]) == 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_contextual_walk_through(server: str) -> None:
    result = run_curl("## Contextual bandits", server)
    assert '"outcome":"success","applied":true' in result.stdout
    stats = httpx.get(f"{server}/api/v1/experiments/recs/bandit/stats").json()
    assert stats["overall"] == {**stats["overall"], "decisions": 1, "successes": 1}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_interleaving_walk_through(server: str, tmp_path: Path) -> None:
    run_curl("## Interleaving", server)
    analysis = httpx.get(f"{server}/api/v1/experiments/search/analysis").json()
    assert (analysis["impressions"], analysis["wins_a"] + analysis["wins_b"]) == (1, 1)
    python = code_block("## Interleaving", "python")
    python = python.replace("sqlite:///abpilot.db", f"sqlite:///{tmp_path / 'il.db'}")
    done = subprocess.run(
        [sys.executable, "-c", python], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "InterleavingAnalysis(impressions=1" in done.stdout


def test_python_walk_through(tmp_path: Path) -> None:
    script = code_block("## Python API", "python")
    script = script.replace("sqlite:///abpilot.db", f"sqlite:///{tmp_path / 'py.db'}")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "42.5" in result.stdout
