"""The bandit simulation (``abpilot.simulation``) and its ``simulate`` command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from abpilot.cli import app
from abpilot.domain.errors import ValidationError
from abpilot.simulation import parse_rates, simulate, summarise_runs

runner = CliRunner()
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def cli() -> typer.Typer:
    """The real ``abpilot`` command, where ``simulate`` is registered."""
    return app


def test_the_loop_finds_the_best_arm_with_sublinear_regret() -> None:
    result = simulate([0.02, 0.10], horizon=20_000, update_every=1_000, seed=3)
    assert result.best_arm == 1
    assert result.share_best > 0.8
    assert int(result.pulls.sum()) == 20_000
    assert result.pulls_at[-1] == 20_000
    half = int(np.searchsorted(result.pulls_at, 10_000))
    assert result.pulls_at[half] == 10_000
    first_half = result.cumulative_regret[half]
    second_half = result.cumulative_regret[-1] - first_half
    assert second_half < first_half
    # Expected regret: 0.08 per pull on the worse arm, whatever the draws.
    assert result.final_regret == pytest.approx(0.08 * int(result.pulls[0]))
    # Burn-in at the configured 50/50, then the floor of 1% on the worse arm.
    assert tuple(result.weights[0]) == (0.5, 0.5)
    assert result.final_weights == (0.01, 0.99)
    assert np.all(np.diff(result.cumulative_regret) >= 0)


def test_the_same_seed_gives_the_same_result() -> None:
    runs = [simulate([0.05, 0.06, 0.04], horizon=6_000, update_every=500, seed=7) for _ in "ab"]
    a, b = runs
    for name in ("pulls_at", "cumulative_regret", "weights", "pulls", "conversions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.final_weights == b.final_weights
    other = simulate([0.05, 0.06, 0.04], horizon=6_000, update_every=500, seed=8)
    assert not np.array_equal(a.conversions, other.conversions)


def test_a_ragged_last_round_and_summary() -> None:
    runs = [
        simulate([0.1, 0.2], horizon=2_500, update_every=1_000, seed=s, min_exposures=10)
        for s in range(2)
    ]
    assert list(runs[0].pulls_at) == [1_000, 2_000, 2_500]
    assert runs[0].weights.shape == (3, 2)
    summary = summarise_runs(runs)
    assert summary.runs == 2
    assert summary.regret_mean == pytest.approx(np.mean([r.final_regret for r in runs]))
    assert sum(summary.pull_share) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="read-only"):
        runs[0].pulls[0] = 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1", "2 to 20 arm rates (got 1)"),
        (",".join(["0.1"] * 21), "2 to 20 arm rates (got 21)"),
        ("0.1,1.0", "strictly between 0 and 1 (got 1.0)"),
        ("0.1,0", "strictly between 0 and 1 (got 0.0)"),
        ("0.1,abc", "could not read 'abc'"),
    ],
)
def test_bad_rates_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rates(text)


def test_cli_prints_the_tables() -> None:
    args = ["simulate", "--arms", "0.05,0.1,0.07", "--horizon", "3000", "--update-every", "500"]
    result = runner.invoke(cli(), [*args, "--seeds", "2"])
    assert result.exit_code == 0, result.output
    assert "final cumulative regret" in result.output
    assert "share of pulls on the best arm (arm1)" in result.output
    assert "final weight" in result.output
    assert "arm1 (best)" in result.output


@pytest.mark.parametrize(
    ("arms", "extra", "message"),
    [
        ("0.05", [], "2 to 20 arm rates"),
        ("0.05,1.5", [], "strictly between 0 and 1"),
        ("0.05,0.1", ["--min-weight", "0.6"], "min_weight"),
    ],
)
def test_cli_refuses_bad_input_with_exit_code_2(arms: str, extra: list[str], message: str) -> None:
    result = runner.invoke(cli(), ["simulate", "--arms", arms, "--horizon", "100", *extra])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_without_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes ``import matplotlib`` fail
    out = tmp_path / "sim.png"
    args = ["simulate", "--arms", "0.05,0.1", "--horizon", "100", "--plot", str(out)]
    result = runner.invoke(cli(), args)
    assert result.exit_code == 2
    assert "install abpilot[plot]" in result.output
    assert not out.exists()


@pytest.mark.skipif(
    not HAS_MATPLOTLIB, reason="matplotlib is not installed (pip install -e '.[plot]')"
)
def test_cli_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "sim.png"
    args = ["simulate", "--arms", "0.05,0.1", "--horizon", "2000", "--update-every", "250"]
    result = runner.invoke(cli(), [*args, "--seeds", "2", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
