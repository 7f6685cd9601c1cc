"""The CLI's analysis and planning commands on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import abpilot
from abpilot.cli import app
from abpilot.store.base import EventKind

runner = CliRunner()


def test_analyze_prints_the_verdict_and_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    service = abpilot.open(url)
    service.create_experiment(
        key="cta",
        variants=[{"key": "control", "weight": 0.5}, {"key": "bold", "weight": 0.5}],
        metrics=[
            {"key": "conversion"},
            {"key": "refund", "role": "guardrail", "margin": 0.05, "higher_is_better": False},
        ],
        settings={"analysis": {"sample_size_per_variant": 500}},
    )
    service.start_experiment("cta")
    events = []
    for variant, converting in (("control", 50), ("bold", 100)):
        for i in range(500):
            unit = f"{variant}-{i}"
            events.append(abpilot.EventInput(EventKind.EXPOSURE, "cta", unit, variant))
            if i < converting:
                events.append(abpilot.EventInput(EventKind.CONVERSION, "cta", unit))
            if i % 50 == 0:
                events.append(
                    abpilot.EventInput(EventKind.CONVERSION, "cta", unit, metric="refund")
                )
    service.record_events(events)
    service.store.close()

    table = runner.invoke(app, ["analyze", "cta", "--store-url", url])
    assert table.exit_code == 0, table.output
    assert "winner_found" in table.output
    assert "bold" in table.output
    assert "Guardrail refund (bold): harm beyond the margin ruled out" in table.output
    assert "Decision: ship bold" in table.output
    assert "guardrails_safe: " in table.output
    raw = runner.invoke(app, ["analyze", "cta", "--store-url", url, "--json"])
    body = json.loads(raw.output)
    assert body["winner"]["key"] == "bold"
    assert (body["decision"]["action"], body["decision"]["variant"]) == ("ship", "bold")
    missing = runner.invoke(app, ["analyze", "nope", "--store-url", url])
    assert missing.exit_code == 2
    assert "no experiment" in missing.output


def test_sample_size_command() -> None:
    result = runner.invoke(app, ["sample-size", "--baseline-rate", "0.1", "--mde", "0.02"])
    assert result.exit_code == 0
    assert result.output.startswith("3835 units per variant")
    refused = runner.invoke(app, ["sample-size", "--baseline-rate", "0.1", "--mde", "2"])
    assert refused.exit_code == 2


def test_contextual_verbs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cb.db'}"
    service = abpilot.open(url)
    service.create_experiment(
        key="recs",
        type="contextual_bandit",
        variants=[{"key": "svd", "weight": 0.5}, {"key": "graph", "weight": 0.5}],
        settings={"contextual": {"attributes": {"time_of_day": ["morning", "night"]}}},
    )
    service.start_experiment("recs")
    service.store.close()

    decided = runner.invoke(
        app, ["decide", "recs", "--context", "time_of_day=night", "--store-url", url]
    )
    assert decided.exit_code == 0, decided.output
    decision = json.loads(decided.output)
    assert decision["context_key"] == "time_of_day=night"
    fed = runner.invoke(
        app, ["feedback", "recs", decision["decision_id"], "click", "--store-url", url]
    )
    assert fed.exit_code == 0, fed.output
    assert "success (applied)" in fed.output
    by_unit = runner.invoke(
        app, ["decide", "recs", "-c", "time_of_day=morning", "--unit-id", "1", "--store-url", url]
    )
    assert by_unit.exit_code == 0, by_unit.output
    mine = json.loads(by_unit.output)["decision_id"]
    fed = runner.invoke(
        app, ["feedback", "recs", "--unit-id", "1", "thumbs-up", "--store-url", url]
    )
    assert fed.exit_code == 0, fed.output
    assert f"success (applied) on decision {mine}" in fed.output
    nobody = runner.invoke(app, ["feedback", "recs", "--unit-id", "2", "click", "--store-url", url])
    assert nobody.exit_code == 2
    assert "unit '2' has no decision" in nobody.output
    stats = runner.invoke(app, ["bandit-stats", "recs", "--store-url", url])
    assert stats.exit_code == 0, stats.output
    assert "time_of_day=night" in stats.output
    bad = runner.invoke(
        app, ["decide", "recs", "--context", "time_of_day=noon", "--store-url", url]
    )
    assert bad.exit_code == 2
    assert "time_of_day" in bad.output


def test_demo_runs_the_three_experiments(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    result = runner.invoke(app, ["demo", "--database", str(database), "--users", "2000"])
    assert result.exit_code == 0, result.output
    assert "1. A/B test" in result.output
    assert "2. Bandit" in result.output
    assert "3. Contextual bandit" in result.output
    service = abpilot.open(f"sqlite:///{database}")
    keys = {e.key for e in service.list_experiments()}
    assert keys == {"button-colour", "pricing", "recommender"}
    assert len(service.get_history("pricing")[0]) >= 1  # the weights moved
    again = runner.invoke(app, ["demo", "--database", str(database)])
    assert again.exit_code == 2  # never overwrites a file


def test_analyze_shows_the_adjustment_and_the_segments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    service = abpilot.open(url)
    service.create_experiment(
        key="cta",
        variants=[{"key": "control", "weight": 0.5}, {"key": "bold", "weight": 0.5}],
        metrics=[{"key": "revenue", "kind": "value", "covariate": "pre"}],
        dimensions=["country"],
    )
    service.start_experiment("cta")
    events = []
    for variant, shift in (("control", 0.0), ("bold", 2.0)):
        for i in range(60):
            unit, pre = f"{variant}-{i}", float(i % 13)
            country = "nl" if i % 2 else "de"
            events.append(
                abpilot.EventInput(
                    EventKind.EXPOSURE,
                    "cta",
                    unit,
                    variant,
                    covariates={"pre": pre},
                    dimensions={"country": country},
                )
            )
            events.append(
                abpilot.EventInput(
                    EventKind.CONVERSION, "cta", unit, metric="revenue", value=pre + shift + i % 3
                )
            )
    service.record_events(events)
    service.store.close()
    table = runner.invoke(app, ["analyze", "cta", "--store-url", url, "--dimension", "country"])
    assert table.exit_code == 0, table.output
    assert "bold: adjusted by pre (theta" in table.output
    assert "country=nl: bold 30 units" in table.output
    assert "revenue/bold: Cochran's Q" in table.output
    raw = runner.invoke(
        app, ["analyze", "cta", "--store-url", url, "--json", "--dimension", "country"]
    )
    body = json.loads(raw.output)
    assert body["covariate"] == "pre"
    assert [s["value"] for s in body["segments"]["segments"]] == ["de", "nl"]
