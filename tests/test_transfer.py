"""`abpilot export` and `abpilot import` move experiments between stores without losing anything:
SQLite to PostgreSQL to Redis and back, and refuse a bad file before writing anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import abpilot
from abpilot.cli import app
from tests.conftest import REDIS_URL, postgres_schema_url, redis_prefix

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of the demo's store: an A/B test, a bandit with daily intake and weight history,
    and a contextual bandit with decisions and feedback."""
    folder = tmp_path_factory.mktemp("demo")
    database = folder / "demo.db"
    seeded = runner.invoke(app, ["demo", "--database", str(database), "--users", "2000"])
    assert seeded.exit_code == 0, seeded.output
    service = abpilot.open(f"sqlite:///{database}")
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    service.store.put_document("monitoring", "reports/manual", '{"ok": true}', "digest-1", moment)
    service.store.close()
    out = folder / "demo.json"
    exported = runner.invoke(
        app, ["export", "--output", str(out), "--store-url", f"sqlite:///{database}"]
    )
    assert exported.exit_code == 0, exported.output
    return out


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with redis_prefix() as prefix:
        monkeypatch.setenv("REDIS_PREFIX", prefix)
        yield REDIS_URL


def flat(output: str) -> str:
    """Output without the line breaks rich puts in long messages."""
    return " ".join(output.split())


def content(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    document.pop("exported_at")
    return document


def move(source: Path, url: str, out: Path) -> None:
    """Import ``source`` into the store at ``url``, then export that store to ``out``."""
    imported = runner.invoke(app, ["import", str(source), "--store-url", url])
    assert imported.exit_code == 0, imported.output
    assert "imported 3 experiment(s)" in imported.output
    exported = runner.invoke(app, ["export", "-o", str(out), "--store-url", url])
    assert exported.exit_code == 0, exported.output


def test_sqlite_to_postgres_to_redis_and_back_loses_nothing(
    demo_export: Path, tmp_path: Path, redis_env: str
) -> None:
    original = content(demo_export)
    assert {e["definition"]["type"] for e in original["experiments"]} == {
        "ab_test",
        "bandit",
        "contextual_bandit",
    }
    assert all(
        e["counters"] or e["decisions"] or e["daily_metrics"] for e in original["experiments"]
    )
    assert original["documents"][0]["key"] == "reports/manual"
    assert any(e["snapshots"] for e in original["experiments"])  # the demo's daily snapshots
    assert any(len(e["allocations"]) > 1 and e["daily_metrics"] for e in original["experiments"])

    with postgres_schema_url() as postgres:
        move(demo_export, postgres, tmp_path / "pg.json")
    move(tmp_path / "pg.json", redis_env, tmp_path / "redis.json")
    sqlite = f"sqlite:///{tmp_path / 'back.db'}"
    move(tmp_path / "redis.json", sqlite, tmp_path / "back.json")

    for hop in ("pg.json", "redis.json", "back.json"):
        assert content(tmp_path / hop) == original, hop

    before = abpilot.open(f"sqlite:///{demo_export.parent / 'demo.db'}")
    after = abpilot.open(sqlite)
    for entry in original["experiments"]:
        key = entry["definition"]["key"]
        if entry["definition"]["type"] == "contextual_bandit":
            assert after.contextual.stats(key) == before.contextual.stats(key)
            continue
        assert after.analyze_experiment(key) == before.analyze_experiment(key)
        for unit in [a[0] for a in entry["assignments"][:50]] + ["someone-new"]:
            assert after.get_variant_for_user(key, unit) == before.get_variant_for_user(key, unit)


def test_an_export_of_named_experiments(demo_export: Path, tmp_path: Path) -> None:
    source = f"sqlite:///{demo_export.parent / 'demo.db'}"
    key = content(demo_export)["experiments"][0]["definition"]["key"]
    out = tmp_path / "one.json"
    result = runner.invoke(app, ["export", "-o", str(out), "-e", key, "--store-url", source])
    assert result.exit_code == 0, result.output
    assert [e["definition"]["key"] for e in content(out)["experiments"]] == [key]

    missing = runner.invoke(app, ["export", "-o", str(out), "-e", "nope", "--store-url", source])
    assert missing.exit_code == 2
    assert "no experiment with id or key 'nope'" in flat(missing.output)


def test_an_experiment_already_there_stops_the_import_unless_skipped(
    demo_export: Path, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    document = json.loads(demo_export.read_text(encoding="utf-8"))
    first = tmp_path / "first.json"
    first.write_text(json.dumps({**document, "experiments": document["experiments"][:1]}))
    assert runner.invoke(app, ["import", str(first), "--store-url", target]).exit_code == 0

    refused = runner.invoke(app, ["import", str(demo_export), "--store-url", target])
    assert refused.exit_code == 2
    assert "already exists in this store; nothing was imported" in flat(refused.output)
    assert len(abpilot.open(target).list_experiments()) == 1

    skipped = runner.invoke(
        app, ["import", str(demo_export), "--skip-existing", "--store-url", target]
    )
    assert skipped.exit_code == 0, skipped.output
    assert "imported 2 experiment(s), skipped 1 already present" in flat(skipped.output)
    assert len(abpilot.open(target).list_experiments()) == 3


def edit(document: dict[str, Any], change: str) -> dict[str, Any]:
    """``document`` with one thing broken."""
    broken: dict[str, Any] = json.loads(json.dumps(document))
    experiment = next(e for e in broken["experiments"] if e["assignments"])
    if change == "format":
        broken["format"] = "something-else"
    elif change == "version":
        broken["schema_version"] = 2
    elif change == "variant":
        experiment["assignments"][0][1] = "ghost"
    elif change == "negative":
        experiment["counters"][0]["exposures"] = -1
    elif change == "period":
        experiment["assignments"][0][2] = 99
    elif change == "repeat":
        experiment["event_ids"] = ["e1", "e1"]
    elif change == "definition":
        experiment["definition"]["variants"] = []
    elif change == "id":
        experiment["definition"]["id"] = "{" + experiment["definition"]["id"] + "}"
    elif change == "long_unit":
        experiment["exposed_units"].append("u" * 300)
    return broken


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("format", "not an abpilot export"),
        ("version", "schema_version 2 is not supported"),
        ("variant", "unknown variant 'ghost'"),
        ("negative", "greater than or equal to 0"),
        ("period", "period 99 has no allocation"),
        ("repeat", "'e1' appears twice"),
        ("definition", "experiments["),
        ("id", "canonical UUID"),
        ("long_unit", "at most 256 characters"),
    ],
)
def test_a_bad_file_is_refused_with_the_place_and_nothing_is_written(
    demo_export: Path, tmp_path: Path, change: str, message: str
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(edit(json.loads(demo_export.read_text()), change)))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    result = runner.invoke(app, ["import", str(broken), "--store-url", target])
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)
    assert abpilot.open(target).list_experiments() == []


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["import", str(bad), "--store-url", "memory://"])
    assert result.exit_code == 2
    assert "is not a JSON file" in flat(result.output)
    missing = runner.invoke(app, ["import", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2
    assert "cannot read" in flat(missing.output)


def test_an_interleaving_experiment_with_impressions_and_clicks_goes_through_the_cli(
    tmp_path: Path,
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    service = abpilot.open(source)
    service.create_experiment(
        key="search",
        type="interleaving",
        variants=[{"key": "ranker_a", "weight": 0.5}, {"key": "ranker_b", "weight": 0.5}],
    )
    service.start_experiment("search")
    for n in range(5):
        shown = service.interleaving.interleave(
            "search", unit_id=f"u{n}", ranking_a=["a", "b", "c"], ranking_b=["c", "a", "d"]
        )
        service.interleaving.record_clicks(
            "search", impression_id=shown.impression_id, items=list(shown.items[:2])
        )
    before = service.interleaving.analyse("search")
    service.store.close()

    out = tmp_path / "search.json"
    exported = runner.invoke(app, ["export", "-o", str(out), "--store-url", source])
    assert exported.exit_code == 0, exported.output
    target = f"sqlite:///{tmp_path / 'target.db'}"
    imported = runner.invoke(app, ["import", str(out), "--store-url", target])
    assert imported.exit_code == 0, imported.output
    assert "imported 1 experiment(s)" in flat(imported.output)
    again = tmp_path / "again.json"
    assert runner.invoke(app, ["export", "-o", str(again), "--store-url", target]).exit_code == 0
    assert content(again) == content(out)
    assert abpilot.open(target).interleaving.analyse("search") == before
