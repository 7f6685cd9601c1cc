"""Every notebook of docs/notebooks/ runs, as committed, in a fresh Jupyter kernel (nbclient,
the ``python3`` kernel of the installed ipykernel) on this checkout's abpilot, without an error;
the quickstart's key outputs are there."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import abpilot

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
SOURCE = Path(abpilot.__file__).resolve().parents[1]  # the src/ the tests import abpilot from
TIMEOUT_S = 120
# One worker runs them all, so each notebook runs once (``executed``).
pytestmark = pytest.mark.xdist_group("notebooks")


def run(path: Path, workdir: Path) -> Any:
    """The notebook at ``path`` executed in ``workdir``, with a last cell that prints where the
    kernel imported abpilot from."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(
        nbformat.v4.new_code_cell("import abpilot as _abpilot\nprint(_abpilot.__file__)")
    )
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    python_path = os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))
    client.execute(env={**os.environ, "PYTHONPATH": python_path})  # raises on a failing cell
    return notebook


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Any]:
    """The executed notebook of a path, run once for the module."""
    done: dict[Path, Any] = {}

    def get(path: Path) -> Any:
        if path not in done:
            done[path] = run(path, tmp_path_factory.mktemp(path.stem))
        return done[path]

    return get


def outputs(cell: Any, kind: str) -> str:
    """Everything the cell showed as ``kind`` (``text/html``, ``text/plain``, or ``stream``)."""
    found = []
    for output in cell.outputs:
        if kind == "stream" and output.output_type == "stream":
            found.append(output.text)
        elif kind in output.get("data", {}):
            found.append(output.data[kind])
    return "".join(found)


def cell_with(notebook: Any, line: str) -> Any:
    """The code cell that has ``line`` as one of its lines (``analysis``: the cell showing it)."""
    return next(
        c
        for c in notebook.cells
        if c.cell_type == "code" and line in (x.strip() for x in c.source.splitlines())
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_the_notebook_runs(path: Path, executed: Callable[[Path], Any]) -> None:
    notebook = executed(path)
    shown = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in shown if o.output_type == "error"]
    assert Path(outputs(notebook.cells[-1], "stream").strip()) == Path(abpilot.__file__).resolve()


def test_the_quickstart_shows_the_results_as_tables(executed: Callable[[Path], Any]) -> None:
    notebook = executed(ROOT / "docs" / "notebooks" / "quickstart.ipynb")
    metrics = outputs(cell_with(notebook, "metrics"), "text/html")
    assert "Metrics of checkout-button" in metrics
    analysis = outputs(cell_with(notebook, "analysis"), "text/html")
    assert 'class="abpilot-result"' in analysis
    assert "<td>control</td>" in analysis
    assert "<td>green</td>" in analysis
    assert "winner_found: green beats the control" in analysis  # the seeded data's verdict
    frame = outputs(cell_with(notebook, "frame = analysis.to_frame()"), "text/plain")
    for column in ("conversion_rate", "lift_ci_low", "lift_ci_high", "p_value_adjusted"):
        assert column in frame
    allocation = outputs(cell_with(notebook, "allocation"), "text/html")
    assert "Allocation of hero-banner" in allocation
    assert all(f"<td>{arm}</td>" in allocation for arm in ("control", "variant_a", "variant_b"))
