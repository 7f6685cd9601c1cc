"""The reproductions of the "trust first" review, one test each, on every store: text that cannot
be hashed or stored, JSON too deep to read back, NUL on PostgreSQL, planning inputs out of range.
Each was a crash, a 500 or a stored document that broke a list for everyone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mmh3
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import abpilot
from abpilot.cli import app as cli
from abpilot.domain.assignment import bucket
from abpilot.domain.errors import ValidationError
from abpilot.domain.text import MAX_JSON_DEPTH
from tests.api.conftest import API, experiment_body, running

SURROGATE = "x\udfff"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _raw(client: TestClient, path: str, body: str) -> Any:
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


# 1. lone surrogates ------------------------------------------------------------------------


def test_a_lone_surrogate_targeting_key_is_an_ofrep_error_not_a_dead_server(
    client: TestClient,
) -> None:
    running(client)
    body = '{"context":{"targetingKey":"\\udfff"}}'
    for path in ("/ofrep/v1/evaluate/flags/button", "/ofrep/v1/evaluate/flags"):
        answer = _raw(client, path, body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["errorCode"] == "INVALID_CONTEXT"
        assert "targetingKey" in answer.json()["errorDetails"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/experiments/button/assign", '{"unit_id": "u\\udfff"}', "unit_id"),
        ("/experiments/button/exposures", '{"unit_id": "u\\udfff"}', "unit_id"),
        ("/experiments/button/exposures", '{"unit_id": "u", "event_id": "\\ud800"}', "event_id"),
        (
            "/experiments/conversions",
            '{"experiment_id": "button", "user_id": "\\udfff", "metric_name": "conversion"}',
            "user_id",
        ),
        (
            "/events",
            '{"events": [{"type": "exposure", "experiment_id": "button", "unit_id": "\\udc00"}]}',
            "events[0].unit_id",
        ),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_422_naming_the_field(
    client: TestClient, path: str, body: str, field: str
) -> None:
    running(client)
    answer = _raw(client, API + path, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    metrics = client.get(f"{API}/experiments/button/metrics").json()
    assert all(v["assigned_units"] == 0 and v["exposures"] == 0 for v in metrics["variants"])


def test_a_lone_surrogate_in_a_variant_config_is_refused_and_nothing_is_stored(
    client: TestClient,
) -> None:
    body = json.dumps(experiment_body()).replace('"blue"', '"bl\\udfffue"')
    answer = _raw(client, f"{API}/experiments", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "variants[0].config"
    assert "variants[0].config.colour must be valid Unicode" in answer.json()["error"]["message"]
    assert client.get(f"{API}/experiments").json() == []


def test_a_lone_surrogate_in_a_ranking_is_refused_without_storing_an_impression(
    client: TestClient,
) -> None:
    running(client, "search", type="interleaving", metrics=[])
    body = '{"unit_id": "u", "ranking_a": ["d1", "\\udfff"], "ranking_b": ["d2"]}'
    answer = _raw(client, f"{API}/experiments/search/interleave", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "ranking_a[1]"
    assert client.get(f"{API}/experiments/search/analysis").json()["impressions"] == 0


def test_featurevisor_events_and_stats_refuse_unencodable_and_nul_text(
    client: TestClient,
) -> None:
    for name in ("a\x00b", SURROGATE):
        exposed = client.post(
            "/expose",
            content=json.dumps({"datafile": name, "features": {"f": "v"}}).encode(),
            headers={"content-type": "application/json"},
        )
        assert exposed.status_code == 422, exposed.text
        assert exposed.json()["error"]["field"] == "datafile"
    assert client.get("/stats", params={"datafile": "a\x00b"}).status_code == 404


def test_the_python_api_refuses_a_lone_surrogate_before_hashing(tmp_path: Path) -> None:
    service = abpilot.open(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        service.create_experiment(
            key="k", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
        )
        service.start_experiment("k")
        for call in (
            lambda: service.get_variant_for_user("k", SURROGATE),
            lambda: service.get_variant_for_user("k", SURROGATE, record=False),
            lambda: service.get_variants_for_users("k", ["ok", SURROGATE]),
            lambda: service.record_exposure(experiment="k", unit_id=SURROGATE),
            lambda: service.get_experiment(SURROGATE),
        ):
            with pytest.raises(ValidationError) as refused:
                call()
            assert refused.value.field in {"unit_id", "unit_ids[1]", "experiment_id"}
    finally:
        service.store.close()


def test_the_cli_refuses_undecodable_arguments_with_a_message(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in argv reach Python as lone surrogates (surrogateescape)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    service = abpilot.open(url)
    service.create_experiment(
        key="recs",
        type="contextual_bandit",
        variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        settings={"contextual": {"attributes": {"tod": ["morning", "evening"]}}},
    )
    service.start_experiment("recs")
    service.store.close()
    result = CliRunner().invoke(
        cli, ["decide", "recs", "-c", "tod=morning", "--unit-id", "\udcff", "--store-url", url]
    )
    assert result.exit_code == 2, result.output
    assert "unit_id" in result.output


def test_hashing_bytes_keeps_every_bucket_of_valid_text() -> None:
    """The assignment hash is mmh3 of the UTF-8 bytes: for any valid text the same number mmh3
    gives for the string (so no unit moves), and an exception, not a crash, for a surrogate."""
    for text in ("checkout.checkout.user-123", "s.k.ü-ñ-漢字", "s.k.\U0001f600"):
        assert bucket(text) == mmh3.hash(text, 0, signed=False) * 10_000 >> 32
    with pytest.raises(UnicodeEncodeError):
        bucket(SURROGATE)


# 2. JSON depth -----------------------------------------------------------------------------


def test_a_config_nested_past_the_limit_is_refused_and_the_list_still_reads(
    client: TestClient,
) -> None:
    deep = experiment_body("deep")
    deep["variants"][0]["config"] = _nested(300)
    answer = client.post(f"{API}/experiments", json=deep)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "variants[0].config"
    assert "32 levels" in answer.json()["error"]["message"]

    deepest = experiment_body("deepest")
    deepest["variants"][0]["config"] = _nested(MAX_JSON_DEPTH)
    deepest["settings"] = {"note": _nested(MAX_JSON_DEPTH - 1)}
    assert client.post(f"{API}/experiments", json=deepest).status_code == 201
    too_deep_settings = experiment_body("deeper", settings={"note": _nested(MAX_JSON_DEPTH)})
    assert client.post(f"{API}/experiments", json=too_deep_settings).status_code == 422

    listed = client.get(f"{API}/experiments")
    assert listed.status_code == 200, listed.text
    assert [e["key"] for e in listed.json()] == ["deepest"]
    assert listed.json()[0]["variants"][0]["config"] == _nested(MAX_JSON_DEPTH)


# 3. NUL before any store call ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/experiments/button/exposures", {"unit_id": "a\x00b"}, 422),
        (
            "POST",
            "/experiments/conversions",
            {"experiment_id": "button", "user_id": "a\x00b", "metric_name": "conversion"},
            422,
        ),
        ("POST", "/experiments/button/assign", {"unit_id": "a\x00b"}, 422),
        ("GET", "/experiments/a%00b", None, 422),
        ("GET", "/experiments/a%00b/analysis", None, 422),
        ("POST", "/experiments/a%00b/exposures", {"unit_id": "u"}, 422),
    ],
)
def test_nul_is_refused_alike_on_every_store(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    running(client)
    answer = client.request(method, API + path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == "validation_error"


# 4. sample size --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"standard_deviation": "1.19e308", "mde": "2.6e-117"},
        {"standard_deviation": "1e-300", "mde": "1e300"},
        {"baseline_rate": "0.5", "mde": "1e-12"},
        {"standard_deviation": "nan", "mde": "1"},
        {"baseline_mean": "1e308", "standard_deviation": "1", "mde": "10", "relative": "true"},
    ],
)
def test_out_of_range_planning_inputs_are_a_422_that_says_why(
    client: TestClient, params: dict[str, str]
) -> None:
    answer = client.get(f"{API}/sample-size", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] in {"mde", "standard_deviation", "baseline_rate"}


def test_a_large_effect_plans_the_normal_approximations_handful_of_units(
    client: TestClient,
) -> None:
    """statsmodels cannot solve effects of 5 standard deviations; the closed form
    n = 2 (z_{1-a/2} + z_power)^2 / d^2 = 2 * 2.8016^2 / 25 = 0.63 gives one unit."""
    answer = client.get(f"{API}/sample-size", params={"standard_deviation": "1", "mde": "5"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["required_per_variant"] == 1
