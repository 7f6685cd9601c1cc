"""Results in a notebook: the HTML tables (escaped, with the content of the objects) and the
DataFrames (their columns and values are the objects' fields), and pandas stays optional."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pandas as pd
import pytest

import abpilot
from abpilot import notebook
from abpilot.service import ExperimentService
from abpilot.service.allocation import AllocationResult, ArmAllocation
from abpilot.service.contextual import ArmStats, ContextualStats, PolicyComparison, RateStats
from abpilot.stats.analysis import Analysis, Arm, MetricInput, VariantResult, analyse
from abpilot.stats.guardrails import GuardrailCheck
from abpilot.stats.options import AnalysisOptions

HOSTILE = "<script>alert('x')</script> & co"
INTERVALS = (
    "ci",
    "difference_ci",
    "lift_ci",
    "credible_interval",
    "unadjusted_difference_ci",
    "unadjusted_lift_ci",
)
NESTED = {"guardrail": GuardrailCheck}  # a nested result: one prefixed column per field


def analysis(*, successes: tuple[int, int] = (100, 130), n: int = 1000) -> Analysis:
    arms = (
        Arm("control", True, 0.5, n, successes[0], None, None),
        Arm("<b>green</b>", False, 0.5, n, successes[1], None, None, name=HOSTILE),
    )
    return analyse(
        [MetricInput("conversion", True, arms)], metric="conversion", options=AnalysisOptions()
    )


class Cells(HTMLParser):
    """The text of every header and data cell of an HTML fragment, and its tags."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in {"td", "th"}:
            self._open = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"}:
            self._open = False

    def handle_data(self, data: str) -> None:
        if self._open:
            self.cells[-1] += data


def parse(fragment: str) -> Cells:
    cells = Cells()
    cells.feed(fragment)
    cells.close()
    return cells


# HTML ------------------------------------------------------------------------------------------


def test_every_piece_of_text_is_escaped() -> None:
    @dataclasses.dataclass(frozen=True)
    class Row:
        key: str
        note: str

    fragment = notebook.table(
        HOSTILE, [notebook.record(Row(HOSTILE, "fine"))], note=HOSTILE, details={HOSTILE: HOSTILE}
    )
    assert "<script>" not in fragment
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in fragment
    parsed = parse(fragment)
    assert "script" not in parsed.tags
    assert parsed.cells.count(HOSTILE) == 3  # the row's key, the detail's name and value


def test_the_analysis_table_shows_the_verdict_the_variants_and_the_details() -> None:
    result = analysis()
    fragment = result._repr_html_()
    assert "<b>green</b>" not in fragment
    assert "&lt;b&gt;green&lt;/b&gt;" in fragment
    assert result.message.replace("'", "&#x27;") in fragment
    cells = parse(fragment).cells
    header = cells[: cells.index("control")]
    assert header[:3] == ["variant", "is_control", "units"]
    assert {"ci", "lift_ci", "p_value_adjusted", "probability_best"} <= set(header)
    green = result.variants[1]
    row = cells[cells.index("<b>green</b>") :][: len(header)]
    assert row[header.index("units")] == "1,000"
    assert row[header.index("significant")] == ("yes" if green.significant else "no")
    assert green.lift_ci is not None
    assert row[header.index("lift_ci")] == f"[{green.lift_ci[0]:.4g}, {green.lift_ci[1]:.4g}]"
    # The details: the SRM check, the plan and the options, flattened.
    assert {"srm_p_value", "sample_size_required_per_variant", "correction"} <= set(cells)


def test_columns_empty_in_every_row_are_left_out_of_the_html() -> None:
    header = parse(analysis()._repr_html_()).cells
    assert "lift" in header  # the control has none, green has one
    assert "mean" not in header  # these arms carry no mean

    @dataclasses.dataclass(frozen=True)
    class Row:
        key: str
        missing: float | None

    assert "missing" not in parse(notebook.table("t", [notebook.record(Row("a", None))])).cells


# DataFrames ------------------------------------------------------------------------------------


def variant_columns() -> list[str]:
    columns = []
    for field in dataclasses.fields(VariantResult):
        if field.name in INTERVALS:
            columns += [f"{field.name}_low", f"{field.name}_high"]
        elif field.name in NESTED:
            columns += [f"{field.name}_{f.name}" for f in dataclasses.fields(NESTED[field.name])]
        elif field.name != "key":
            columns.append(field.name)
    return columns


def same(a: object, b: object) -> bool:
    if b is None:
        return a is None or (isinstance(a, float) and math.isnan(a))
    return bool(a == b)


def test_the_analysis_frame_has_a_row_per_variant_and_a_column_per_field() -> None:
    result = analysis()
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.name == "variant"
    assert list(frame.index) == ["control", "<b>green</b>"]
    assert list(frame.columns) == variant_columns()
    for variant in result.variants:
        row = frame.loc[variant.key]
        for field in dataclasses.fields(VariantResult):
            value = getattr(variant, field.name)
            if field.name in INTERVALS:
                low, high = value if value is not None else (None, None)
                assert same(row[f"{field.name}_low"], low), field.name
                assert same(row[f"{field.name}_high"], high), field.name
            elif field.name in NESTED:
                for inner in dataclasses.fields(NESTED[field.name]):
                    expected = None if value is None else getattr(value, inner.name)
                    assert same(row[f"{field.name}_{inner.name}"], expected), inner.name
            elif field.name != "key":
                assert same(row[field.name], value), field.name


def test_the_columns_do_not_depend_on_the_data() -> None:
    """Without any data every interval is None: it still gives its two columns."""
    empty = analysis(successes=(0, 0), n=0)
    assert all(v.ci is None and v.lift_ci is None for v in empty.variants)
    assert list(empty.to_frame().columns) == variant_columns()


@pytest.fixture
def service() -> Iterator[ExperimentService]:
    with abpilot.open("memory://") as service:
        service.create_experiment(
            key="checkout",
            name=HOSTILE,
            variants=[{"key": "control"}, {"key": "green", "name": HOSTILE}],
            metrics=[{"key": "conversion"}, {"key": "revenue", "kind": "value"}],
        )
        service.start_experiment("checkout")
        for i in range(40):
            service.get_variant_for_user("checkout", f"u{i}", expose=True)
            if i % 3 == 0:
                service.record_conversion(
                    experiment="checkout", unit_id=f"u{i}", metric="revenue", value=i
                )
        yield service


def test_the_metrics_frame_has_a_row_per_metric_and_variant(service: ExperimentService) -> None:
    metrics = service.get_metrics("checkout")
    frame = metrics.to_frame()
    assert frame.index.names == ["metric", "variant"]
    assert list(frame.index) == [
        (m, v) for m in ("conversion", "revenue") for v in ("control", "green")
    ]
    for variant in metrics.variants:
        for metric, summary in variant.metrics.items():
            row = frame.loc[(metric, variant.key)]
            for name in ("name", "is_control", "weight", "assigned_units", "unique_units"):
                assert row[name] == getattr(variant, name)
            for field in dataclasses.fields(summary):
                value = getattr(summary, field.name)
                assert same(row[field.name], getattr(value, "value", value)), field.name
    assert frame.loc[("revenue", "green"), "name"] == HOSTILE


def test_the_metrics_table_is_escaped(service: ExperimentService) -> None:
    fragment = service.get_metrics("checkout")._repr_html_()
    assert "<script>" not in fragment
    cells = parse(fragment).cells
    assert cells.count(HOSTILE) == 2  # green's name, on both metrics
    assert {"metric", "variant", "unique_units", "mean", "experiment_key"} <= set(cells)


def test_the_analysis_of_a_service_renders(service: ExperimentService) -> None:
    result = service.analyze_experiment("checkout", metric="revenue")
    assert list(result.to_frame().index) == ["control", "green"]
    fragment = result._repr_html_()
    assert f"{result.reason.value}: " in fragment


def allocation() -> AllocationResult:
    arms = tuple(
        ArmAllocation(key, key == "control", w, p, 1000, s, 14, "none")
        for key, w, p, s in [("control", 0.2, 0.1, 30), ("<a>", 0.8, 0.9, 45)]
    )
    return AllocationResult(
        experiment_id="id-1",
        experiment_name=HOSTILE,
        computed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        method="exact",
        seed=None,
        source="daily",
        window_days=14,
        burn_in=False,
        arms=arms,
    )


def test_the_allocation_frame_and_table() -> None:
    result = allocation()
    frame = result.to_frame()
    assert list(frame.columns) == [
        f.name for f in dataclasses.fields(ArmAllocation) if f.name != "key"
    ]
    assert frame["weight"].to_dict() == result.weights
    assert frame.loc["<a>", "successes"] == 45
    fragment = result._repr_html_()
    assert "<a>" not in fragment
    assert HOSTILE not in fragment
    cells = parse(fragment).cells
    assert {"<a>", "2026-01-02T03:04:05+00:00", "exact", "daily"} <= set(cells)
    assert html.escape(f"Allocation of {HOSTILE}") in fragment


def test_the_contextual_stats_frame_flattens_each_arm() -> None:
    rate = RateStats(50, 10, 0.2, (0.11, 0.33))
    stats = ContextualStats(
        experiment_id="id-2",
        overall=rate,
        arms=(ArmStats("graph", 0.6, rate, 11.0, 41.0), ArmStats("<list>", 0.4, rate, 1.0, 1.0)),
        contexts=(),
        policies=PolicyComparison(rate, None, None),
    )
    frame = stats.to_frame()
    assert list(frame.columns) == [
        "selection_rate",
        "performance_decisions",
        "performance_successes",
        "performance_success_rate",
        "performance_ci_low",
        "performance_ci_high",
        "alpha",
        "beta",
    ]
    assert frame.loc["graph", "performance_ci_high"] == 0.33
    cells = parse(stats._repr_html_()).cells
    assert "<list>" in cells
    assert "[0.11, 0.33]" in cells
    assert "policies_bandit_success_rate" in cells


# pandas is optional ----------------------------------------------------------------------------


def test_without_pandas_to_frame_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'abpilot\[notebook\]'"):
        analysis().to_frame()
    assert "abpilot-result" in analysis()._repr_html_()  # the HTML needs no pandas


def test_the_tables_load_no_pandas() -> None:
    """abpilot imports pandas only inside ``to_frame()`` (statsmodels, which the statistics use,
    loads it on its own)."""
    probe = (
        "import abpilot, abpilot.client, abpilot.notebook; "
        "import json, sys; print(json.dumps('pandas' in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    loaded: Any = json.loads(done.stdout)
    assert loaded is False
