"""README § Warehouse-native analysis, run as printed: the Python block (a DuckDB file of
exposures and orders, sources, an experiment, a refresh, the analysis), then the sources file
and the CLI on the same files."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import readme_blocks
from tests.e2e.readme_blocks import run
from tests.e2e.test_readme import claims, readme

HEADING = "Warehouse-native analysis"


@claims(
    f"README.md § {HEADING} #0",
    f"README.md § {HEADING} #1",
    f"README.md § {HEADING} #2",
)
def test_warehouse_walk_through(tmp_path: Path) -> None:
    python, sources, commands = (readme(HEADING, i) for i in range(3))
    result = run(python, cwd=tmp_path)
    printed = [line[2:] for line in python.text.splitlines() if line.startswith("# ")][1:]
    assert result.stdout.splitlines() == printed
    (tmp_path / "sources.yaml").write_text(sources.text)
    readme_blocks.EXERCISED.add(sources.id)
    cli = run(commands, cwd=tmp_path)
    assert "stored 2 source(s)" in cli.stdout
    assert "ok orders" in cli.stdout
    assert "refreshed checkout" in cli.stdout
    assert "4000 units" in cli.stdout
    assert "green" in cli.stdout
