"""OpenFeature Remote Evaluation Protocol (OFREP): experiments evaluated as flags.

First through FastAPI's TestClient (shapes, status codes, errors, the value rule, determinism,
what is recorded), then with the real OpenFeature SDK and its OFREP provider against a real
`abpilot serve`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from openfeature import api as openfeature
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from abpilot.api import create_app
from abpilot.service import ExperimentService
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.e2e.server import running_server

API = "/api/v1"
OFREP = "/ofrep/v1/evaluate/flags"
UNITS = [f"user-{i}" for i in range(40)]
VARIANTS = [
    {"key": "control", "weight": 0.4, "config": {"colour": "blue"}},
    {"key": "green", "weight": 0.3, "config": {"value": "#00ff00", "size": 2}},
    {"key": "red", "weight": 0.3, "config": {"value": {"colour": "red", "sizes": [1, 2]}}},
]
ARMS = [
    {"key": "control", "weight": 0.34},
    {"key": "variant_a", "weight": 0.33},
    {"key": "variant_b", "weight": 0.33},
]
STEPS: dict[str | None, list[str]] = {
    None: [],
    "running": ["running"],
    "paused": ["running", "paused"],
    "completed": ["running", "completed"],
}
README = Path(__file__).parents[1] / "README.md"
SUCCESS_FIELDS = {"key", "reason", "variant", "value", "metadata"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings(store="memory", scheduler_enabled=False), store=MemoryStore())
    with TestClient(app) as test_client:
        yield test_client


def service_of(client: TestClient) -> ExperimentService:
    service: ExperimentService = client.app.state.service  # type: ignore[attr-defined]
    return service


def create(
    client: TestClient,
    key: str,
    *,
    status: str | None = "running",
    winner: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An experiment moved to ``status`` (None leaves it a draft)."""
    created = client.post(f"{API}/experiments", json={"key": key, "variants": VARIANTS, **fields})
    assert created.status_code == 201, created.text
    experiment: dict[str, Any] = created.json()
    for step in STEPS[status]:
        change: dict[str, Any] = {"status": step}
        if step == "completed" and winner is not None:
            # No data: the decision supports no winner, so naming one is an override.
            change |= {"winner": winner, "override": True}
        moved = client.put(f"{API}/experiments/{key}/status", json=change)
        assert moved.status_code == 200, moved.text
        experiment = moved.json()
    return experiment


def evaluate(client: TestClient, key: str, unit: str = "user-1") -> Any:
    """The TestClient's response to evaluating ``key`` for ``unit``."""
    return client.post(f"{OFREP}/{key}", json={"context": {"targetingKey": unit}})


def assigned_units(client: TestClient, key: str) -> int:
    metrics = client.get(f"{API}/experiments/{key}/metrics").json()
    return sum(v["assigned_units"] for v in metrics["variants"])


# single flag -------------------------------------------------------------------------------------


def test_a_running_experiment_is_a_flag_split_by_unit(client: TestClient) -> None:
    experiment = create(client, "checkout")
    response = client.post(
        f"{OFREP}/checkout", json={"context": {"targetingKey": "user-1", "country": "NL"}}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == SUCCESS_FIELDS
    assert (body["key"], body["reason"]) == ("checkout", "SPLIT")
    assert body["variant"] in {"control", "green", "red"}
    assert body["metadata"] == {
        "experimentId": experiment["id"],
        "experimentKey": "checkout",
        "experimentType": "ab_test",
        "experimentStatus": "running",
        "inExperiment": True,
    }
    by_id = evaluate(client, experiment["id"]).json()
    assert (by_id["key"], by_id["variant"]) == (experiment["id"], body["variant"])


def test_the_value_is_config_value_when_present_else_the_variant_key(client: TestClient) -> None:
    create(client, "checkout")
    values = {}
    for unit in UNITS:
        body = evaluate(client, "checkout", unit).json()
        values[body["variant"]] = body["value"]
    assert values == {
        "control": "control",  # no config["value"]: the variant key
        "green": "#00ff00",
        "red": {"colour": "red", "sizes": [1, 2]},
    }


def test_values_of_every_json_type_and_null_for_the_code_default(client: TestClient) -> None:
    variants = [
        {"key": "off", "weight": 0.5, "config": {"value": False}},
        {"key": "on", "weight": 0.5, "config": {"value": None}},
    ]
    create(client, "toggle", variants=variants)
    create(
        client,
        "limit",
        variants=[{**v, "config": {"value": i * 2.5}} for i, v in enumerate(variants)],
    )
    seen: dict[str, Any] = {}
    for unit in UNITS:
        body = evaluate(client, "toggle", unit).json()
        seen[body["variant"]] = body.get("value", "absent")
        assert evaluate(client, "limit", unit).json()["value"] in {0.0, 2.5}
    assert seen == {"off": False, "on": "absent"}


def test_the_same_unit_gets_the_same_variant_as_assign_and_the_service(client: TestClient) -> None:
    create(client, "checkout")
    service = service_of(client)
    variants = set()
    for unit in UNITS:
        first = evaluate(client, "checkout", unit).json()["variant"]
        assert evaluate(client, "checkout", unit).json()["variant"] == first
        hashed = service.get_variant_for_user("checkout", unit, record=False).variant
        assert hashed is not None
        assert hashed.key == first
        assign = client.post(f"{API}/experiments/checkout/assign", json={"unit_id": unit})
        assert assign.json()["variant"]["key"] == first
        variants.add(first)
    assert variants == {"control", "green", "red"}


def test_an_evaluation_records_the_assignment_once(client: TestClient) -> None:
    create(client, "checkout")
    for unit in UNITS[:5]:
        evaluate(client, "checkout", unit)
        evaluate(client, "checkout", unit)
    assert assigned_units(client, "checkout") == 5


def test_a_bandit_is_a_flag_too(client: TestClient) -> None:
    client.post(f"{API}/experiments", json={"key": "hero", "type": "bandit", "variants": ARMS})
    client.put(f"{API}/experiments/hero/status", json={"status": "running"})
    for unit in UNITS[:10]:
        body = evaluate(client, "hero", unit).json()
        assign = client.post(f"{API}/experiments/hero/assign", json={"unit_id": unit}).json()
        assert (body["reason"], body["variant"]) == ("SPLIT", assign["variant"]["key"])
        assert body["metadata"]["experimentType"] == "bandit"


def test_a_unit_outside_the_traffic_allocation_gets_the_control_by_default(
    client: TestClient,
) -> None:
    create(client, "checkout", traffic_allocation=0.2)
    service = service_of(client)
    outside = [
        u
        for u in UNITS
        if not service.get_variant_for_user("checkout", u, record=False).in_experiment
    ]
    inside = [u for u in UNITS if u not in outside]
    assert outside
    assert inside
    for unit in outside:
        body = evaluate(client, "checkout", unit).json()
        assert (body["reason"], body["variant"], body["value"]) == ("DEFAULT", "control", "control")
        assert body["metadata"]["inExperiment"] is False
    assert assigned_units(client, "checkout") == 0
    assert evaluate(client, "checkout", inside[0]).json()["reason"] == "SPLIT"


@pytest.mark.parametrize(
    ("status", "winner", "reason", "variant", "value"),
    [
        (None, None, "DISABLED", "control", "control"),  # draft
        ("paused", None, "DISABLED", "control", "control"),
        ("completed", None, "DISABLED", "control", "control"),
        ("completed", "green", "STATIC", "green", "#00ff00"),
    ],
)
def test_an_experiment_that_is_not_running_serves_the_control_or_its_winner(
    client: TestClient,
    status: str | None,
    winner: str | None,
    reason: str,
    variant: str,
    value: Any,
) -> None:
    experiment = create(client, "checkout", status=status, winner=winner)
    for unit in UNITS[:10]:
        body = evaluate(client, "checkout", unit).json()
        assert (body["reason"], body["variant"], body["value"]) == (reason, variant, value)
        assert body["metadata"]["experimentStatus"] == experiment["status"]
        assert body["metadata"]["inExperiment"] is False
    assert assigned_units(client, "checkout") == 0


# errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "TARGETING_KEY_MISSING"),
        ({}, "TARGETING_KEY_MISSING"),
        ({"context": None}, "TARGETING_KEY_MISSING"),
        ({"context": {"country": "NL"}}, "TARGETING_KEY_MISSING"),
        ({"context": {"targetingKey": ""}}, "TARGETING_KEY_MISSING"),
        ({"context": {"targetingKey": 42}}, "INVALID_CONTEXT"),
        ({"context": {"targetingKey": "   "}}, "INVALID_CONTEXT"),
        ({"context": {"targetingKey": "u" * 257}}, "INVALID_CONTEXT"),
        ({"context": {"targetingKey": "a\x00b"}}, "INVALID_CONTEXT"),
        ({"context": "user-1"}, "INVALID_CONTEXT"),
        ([{"context": {"targetingKey": "user-1"}}], "INVALID_CONTEXT"),
    ],
)
def test_a_bad_context_is_refused_in_ofreps_shape(client: TestClient, body: Any, code: str) -> None:
    create(client, "checkout")
    response = client.post(f"{OFREP}/checkout", json=body)
    assert response.status_code == 400
    failure = response.json()
    assert set(failure) == {"key", "errorCode", "errorDetails"}
    assert (failure["key"], failure["errorCode"]) == ("checkout", code)
    assert failure["errorDetails"]
    assert assigned_units(client, "checkout") == 0


def test_malformed_json_is_a_parse_error(client: TestClient) -> None:
    create(client, "checkout")
    for raw in (b'{"context": {', b"[" * 100_000, b"\xff\xfe"):
        response = client.post(
            f"{OFREP}/checkout", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["errorCode"] == "PARSE_ERROR"


def test_an_unknown_flag_is_404_flag_not_found(client: TestClient) -> None:
    response = evaluate(client, "no-such-flag")
    assert response.status_code == 404
    assert response.json() == {
        "key": "no-such-flag",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "no experiment with id or key 'no-such-flag'",
    }


def test_contextual_bandits_and_interleaving_are_not_flags(client: TestClient) -> None:
    contextual = {
        "contextual": {
            "attributes": {"user_type": ["new", "returning"]},
            "control": {"weights": {"control": 0.5, "variant_a": 0.5, "variant_b": 0.0}},
        }
    }
    bodies: list[dict[str, Any]] = [
        {"key": "recs", "type": "contextual_bandit", "variants": ARMS, "settings": contextual},
        {
            "key": "search",
            "type": "interleaving",
            "variants": [*ARMS[:1], {"key": "b", "weight": 0.66}],
        },
    ]
    for body in bodies:
        created = client.post(f"{API}/experiments", json=body)
        assert created.status_code == 201, created.text
        client.put(f"{API}/experiments/{body['key']}/status", json={"status": "running"})
        response = evaluate(client, body["key"])
        assert response.status_code == 400
        assert response.json()["errorCode"] == "GENERAL"
        assert body["type"] in response.json()["errorDetails"]
        assert assigned_units(client, body["key"]) == 0


# bulk --------------------------------------------------------------------------------------------


def test_bulk_evaluates_every_running_flag(client: TestClient) -> None:
    create(client, "checkout")
    create(client, "draft-one", status=None)
    create(client, "paused-one", status="paused")
    client.post(f"{API}/experiments", json={"key": "hero", "type": "bandit", "variants": ARMS})
    client.put(f"{API}/experiments/hero/status", json={"status": "running"})
    response = client.post(OFREP, json={"context": {"targetingKey": "user-7"}})
    assert response.status_code == 200
    flags = response.json()["flags"]
    assert set(response.json()) == {"flags"}
    assert [f["key"] for f in flags] == ["checkout", "hero"]
    for flag in flags:
        assert flag == evaluate(client, flag["key"], "user-7").json()
    assert assigned_units(client, "checkout") == assigned_units(client, "hero") == 1


def test_bulk_etag_and_if_none_match(client: TestClient) -> None:
    create(client, "checkout")
    body = {"context": {"targetingKey": "user-7"}}
    first = client.post(OFREP, json=body)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.post(OFREP, json=body, headers={"If-None-Match": header})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    stale = client.post(OFREP, json=body, headers={"If-None-Match": '"other"'})
    assert (stale.status_code, stale.json()) == (200, first.json())
    others = {
        client.post(OFREP, json={"context": {"targetingKey": u}}).headers["etag"] for u in UNITS
    }
    assert len(others) == 3  # one answer per variant
    create(client, "pricing")
    changed = client.post(OFREP, json=body, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert len(changed.json()["flags"]) == 2


def test_bulk_refusals_have_no_key(client: TestClient) -> None:
    missing = client.post(OFREP, json={"context": {}})
    assert missing.status_code == 400
    assert missing.json() == {
        "errorCode": "TARGETING_KEY_MISSING",
        "errorDetails": missing.json()["errorDetails"],
    }
    for body, code in (
        ({"context": {"targetingKey": "x" * 300}}, "INVALID_CONTEXT"),
        ({"context": []}, "INVALID_CONTEXT"),
    ):
        response = client.post(OFREP, json=body)
        assert (response.status_code, response.json()["errorCode"]) == (400, code)
    parse = client.post(OFREP, content=b"{", headers={"content-type": "application/json"})
    assert (parse.status_code, set(parse.json())) == (400, {"errorCode", "errorDetails"})
    assert parse.json()["errorCode"] == "PARSE_ERROR"


def test_bulk_with_no_running_experiment_is_an_empty_list(client: TestClient) -> None:
    response = client.post(OFREP, json={"context": {"targetingKey": "user-1"}})
    assert (response.status_code, response.json()) == (200, {"flags": []})


# auth and the schema -----------------------------------------------------------------------------


def test_evaluation_needs_the_write_role() -> None:
    settings = Settings(
        store="memory", scheduler_enabled=False, api_keys="admin:adm, write:wr, read:rd"
    )
    with TestClient(create_app(settings, store=MemoryStore())) as client:
        admin = {"Authorization": "Bearer adm"}
        client.post(
            f"{API}/experiments", json={"key": "checkout", "variants": VARIANTS}, headers=admin
        )
        client.put(f"{API}/experiments/checkout/status", json={"status": "running"}, headers=admin)
        body = {"context": {"targetingKey": "user-1"}}
        for path in (f"{OFREP}/checkout", OFREP):
            assert client.post(path, json=body).status_code == 401
            assert client.post(path, json=body, headers={"X-API-Key": "rd"}).status_code == 403
            assert client.post(path, json=body, headers={"X-API-Key": "wr"}).status_code == 200
            assert (
                client.post(path, json=body, headers={"Authorization": "Bearer wr"}).status_code
                == 200
            )


def test_the_openapi_document_describes_ofreps_shapes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    single = document["paths"]["/ofrep/v1/evaluate/flags/{key}"]["post"]
    bulk = document["paths"]["/ofrep/v1/evaluate/flags"]["post"]
    assert "context" in single["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"200", "400", "404"} <= set(single["responses"])
    assert {"200", "304", "400"} <= set(bulk["responses"])
    failure = document["components"]["schemas"]["EvaluationFailure"]
    assert set(failure["properties"]) == {"key", "errorCode", "errorDetails"}
    assert failure["properties"]["errorCode"]["enum"] == [
        "PARSE_ERROR",
        "TARGETING_KEY_MISSING",
        "INVALID_CONTEXT",
        "GENERAL",
    ]


# the real OpenFeature SDK against the real server -------------------------------------------------

KEYS = "admin:adm-key,write:wr-key,read:rd-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("ofrep")
    env = {
        "STORE": "sql",
        "DATABASE_URL": f"sqlite:///{tmp / 'o.db'}",
        "SCHEDULER_ENABLED": "false",
        "API_KEYS": KEYS,
    }
    with running_server(env, tmp) as url:
        admin = {"Authorization": "Bearer adm-key"}
        for key, variants in (("checkout", VARIANTS), ("pricing", VARIANTS)):
            created = httpx.post(
                f"{url}{API}/experiments", json={"key": key, "variants": variants}, headers=admin
            )
            assert created.status_code == 201, created.text
            started = httpx.put(
                f"{url}{API}/experiments/{key}/status", json={"status": "running"}, headers=admin
            )
            assert started.status_code == 200, started.text
        yield url


@pytest.fixture
def flags(server: str) -> Iterator[OpenFeatureClient]:
    provider = OFREPProvider(server, headers_factory=lambda: {"Authorization": "Bearer wr-key"})
    openfeature.set_provider(provider, domain="abpilot-tests")
    yield openfeature.get_client(domain="abpilot-tests")
    openfeature.clear_providers()


def test_the_sdk_gets_the_variants_assign_gives(server: str, flags: OpenFeatureClient) -> None:
    write = {"Authorization": "Bearer wr-key"}
    seen = set()
    for unit in UNITS[:12]:
        context = EvaluationContext(targeting_key=unit, attributes={"plan": "pro"})
        assign = httpx.post(
            f"{server}{API}/experiments/checkout/assign", json={"unit_id": unit}, headers=write
        )
        variant = assign.json()["variant"]["key"]
        if variant == "red":  # an object value
            details = flags.get_object_details("checkout", {}, context)
            assert details.value == {"colour": "red", "sizes": [1, 2]}
            mismatch = flags.get_string_details("checkout", "fallback", context)
            assert (mismatch.value, mismatch.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)
        else:
            details = flags.get_string_details("checkout", "fallback", context)
            assert details.value == {"control": "control", "green": "#00ff00"}[variant]
        assert (details.variant, details.reason, details.error_code) == (
            variant,
            Reason.SPLIT,
            None,
        )
        assert details.flag_metadata["experimentKey"] == "checkout"
        seen.add(variant)
    assert seen == {"control", "green", "red"}
    admin = {"Authorization": "Bearer adm-key"}
    metrics = httpx.get(f"{server}{API}/experiments/checkout/metrics", headers=admin).json()
    assert sum(v["assigned_units"] for v in metrics["variants"]) >= 12


def test_the_sdk_reports_an_unknown_flag_with_the_default(flags: OpenFeatureClient) -> None:
    details = flags.get_string_details(
        "no-such-flag", "fallback", EvaluationContext(targeting_key="user-1")
    )
    assert (details.value, details.error_code, details.reason) == (
        "fallback",
        ErrorCode.FLAG_NOT_FOUND,
        Reason.ERROR,
    )


def test_the_sdk_reports_a_missing_targeting_key(flags: OpenFeatureClient) -> None:
    details = flags.get_string_details("checkout", "fallback", EvaluationContext())
    assert (details.value, details.error_code) == ("fallback", ErrorCode.TARGETING_KEY_MISSING)


def test_a_read_key_cannot_evaluate(server: str) -> None:
    provider = OFREPProvider(server, headers_factory=lambda: {"X-API-Key": "rd-key"})
    openfeature.set_provider(provider, domain="abpilot-readers")
    try:
        details = openfeature.get_client(domain="abpilot-readers").get_string_details(
            "checkout", "fallback", EvaluationContext(targeting_key="user-1")
        )
    finally:
        openfeature.clear_providers()
    assert (details.value, details.error_code) == ("fallback", ErrorCode.GENERAL)


def test_bulk_on_the_real_server(server: str) -> None:
    write = {"Authorization": "Bearer wr-key"}
    body = {"context": {"targetingKey": "user-1"}}
    bulk = httpx.post(f"{server}{OFREP}", json=body, headers=write)
    assert {"checkout", "pricing"} <= {f["key"] for f in bulk.json()["flags"]}
    tagged = {**write, "If-None-Match": bulk.headers["etag"]}
    assert httpx.post(f"{server}{OFREP}", json=body, headers=tagged).status_code == 304


def test_the_readme_example_runs(server: str, tmp_path: Path) -> None:
    section = README.read_text().split("## OpenFeature (OFREP)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's OpenFeature section"
    script = match.group(1).replace("http://localhost:8000", server)
    admin = {"Authorization": "Bearer adm-key"}
    variants = [VARIANTS[0], {**VARIANTS[1], "weight": 0.6}]
    body = {"key": "checkout-button", "variants": variants}
    assert httpx.post(f"{server}{API}/experiments", json=body, headers=admin).status_code == 201
    started = httpx.put(
        f"{server}{API}/experiments/checkout-button/status",
        json={"status": "running"},
        headers=admin,
    )
    assert started.status_code == 200
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "ABPILOT_API_KEY": "wr-key"},  # the snippet reads its key from here
    )
    assert done.returncode == 0, done.stderr
    assign = httpx.post(
        f"{server}{API}/experiments/checkout-button/assign",
        json={"unit_id": "user-123"},
        headers={"Authorization": "Bearer wr-key"},
    ).json()
    variant = assign["variant"]["key"]
    value = {"control": "control", "green": "#00ff00"}[variant]
    assert done.stdout.split() == [value, variant, "SPLIT"]
