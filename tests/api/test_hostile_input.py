"""Hostile input as a property, through every route on every store.

Each case takes one valid request of one operation (the experiments, decisions, impressions and
FeatureVisor datafile it names exist) and replaces one part of it (a path segment, a query
parameter, or one value anywhere in the JSON body) by something hostile:

- text UTF-8 cannot carry (a lone UTF-16 surrogate), NUL, control and bidi characters, 100 KB
  strings;
- JSON nested far deeper than any document abpilot keeps, NaN, Infinity and 1e309 (raw JSON
  tokens: Python's parser reads them as floats).

Whatever the part, the service must answer without a 5xx, in its error shape when it refuses
(the API's ``{"error": {"code", "message", "field"}}``, OFREP's ``{"errorCode", …}`` on
``/ofrep``), leave the store exactly as it was when it refuses a change, and stay alive. Text that
cannot be hashed or stored (surrogates, NUL) and non-JSON numbers are always refused with a 4xx.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abpilot.api import create_app
from abpilot.settings import Settings
from abpilot.store.factory import open_store
from tests.conftest import BACKENDS, backend_url
from tests.fixtures import FEATUREVISOR_DATAFILES

API = "/api/v1"
DATAFILES = FEATUREVISOR_DATAFILES
DATAFILE = "production/v2.json"
URL_PART = 1_000
RAW_TOKENS = {"<NaN>": "NaN", "<Infinity>": "Infinity", "<1e309>": "1e309", "<-1e309>": "-1e309"}

# ---- hostile values -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A value to put in place of one part of a request; ``refused``: it must get a 4xx."""

    value: Any
    kind: str
    refused: bool


SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
CONTROL = st.characters(codec="utf-8", categories=["Cc", "Cf"], exclude_characters="\x00")
BIDI = st.sampled_from(["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200f"])
PLAIN = st.text(alphabet="abc-_.01", max_size=6)


def _wrapped(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, c, b: a + c + b, PLAIN, core, PLAIN)


HOSTILE_TEXT = st.one_of(
    _wrapped(SURROGATES).map(lambda s: Hostile(s, "surrogate", True)),
    _wrapped(st.just("\x00")).map(lambda s: Hostile(s, "nul", True)),
    _wrapped(st.text(alphabet=CONTROL, min_size=1, max_size=4)).map(
        lambda s: Hostile(s, "control", False)
    ),
    _wrapped(BIDI).map(lambda s: Hostile(s, "bidi", False)),
    st.sampled_from(["a", "\u202e", "\ud83d\ude00"]).map(
        lambda c: Hostile(c * 100_000, "long", False)
    ),
)


def _nested(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


HOSTILE_JSON = st.one_of(
    st.builds(_nested, st.integers(33, 400), st.just(1), st.booleans()).map(
        lambda v: Hostile(v, "deep", True)
    ),
    st.sampled_from(list(RAW_TOKENS)).map(lambda token: Hostile(token, "non-finite", True)),
)
HOSTILE = st.one_of(HOSTILE_TEXT, HOSTILE_JSON)


def encode(body: Any) -> bytes:
    """JSON with the raw tokens Python's encoder cannot write (1e309) put in as written."""
    text = json.dumps(body)
    for placeholder, token in RAW_TOKENS.items():
        text = text.replace(json.dumps(placeholder), token)
    return text.encode()


# ---- requests -------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: list[str]  # segments; an experiment key is one segment
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    def targets(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every part one hostile value may replace: path segments, parameters, body values."""
        found: list[tuple[str, tuple[Any, ...]]] = []
        found += [("path", (i,)) for i, s in enumerate(self.path) if s.startswith("@")]
        found += [("params", (name,)) for name in self.params]

        def walk(node: Any, at: tuple[Any, ...]) -> None:
            found.append(("body", at))
            if isinstance(node, dict):
                for key, child in node.items():
                    walk(child, (*at, key))
            elif isinstance(node, list):
                for index, child in enumerate(node):
                    walk(child, (*at, index))

        if self.body is not None:
            walk(self.body, ())
        return found

    def with_value(self, target: tuple[str, tuple[Any, ...]], value: Any) -> Request:
        where, at = target
        if where != "body" and isinstance(value, str):
            value = value[:URL_PART]  # a URL carries at most 64 KiB; the body carries the rest
        copy = Request(
            self.method, list(self.path), dict(self.params), json.loads(encode(self.body))
        )
        if where == "path":
            copy.path[at[0]] = value
        elif where == "params":
            copy.params[at[0]] = value
        elif not at:
            copy.body = value
        else:
            node = copy.body
            for key in at[:-1]:
                node = node[key]
            node[at[-1]] = value
        return copy

    def send(self, client: TestClient) -> Any:
        segments = [s.removeprefix("@") if isinstance(s, str) else s for s in self.path]
        url = "/" + "/".join(_path_text(s) for s in segments)
        params = {k: _query_text(v) for k, v in self.params.items()}
        content = None if self.body is None else encode(self.body)
        headers = {"content-type": "application/json"} if content is not None else {}
        return client.request(self.method, url, params=params, content=content, headers=headers)


def _path_text(value: Any) -> str:
    from urllib.parse import quote

    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _query_text(value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


def operations(seeded: dict[str, str]) -> dict[str, Request]:
    """One valid request of every operation, aimed at the seeded objects."""
    exp = ["api", "v1", "experiments"]
    decision, impression, item = seeded["decision"], seeded["impression"], seeded["item"]
    variants = [{"key": "control", "weight": 0.5}, {"key": "b", "weight": 0.5, "config": {"c": 1}}]
    return {
        "create": Request(
            "POST",
            exp,
            body={
                "key": "new-one",
                "name": "New",
                "description": "d",
                "variants": variants,
                "metrics": [{"key": "m", "kind": "binary"}],
                "salt": "s",
                "settings": {"analysis": {"alpha": 0.05}},
            },
        ),
        "list": Request("GET", exp, params={"status": "running"}),
        "get": Request("GET", [*exp, "@ab"]),
        "patch": Request(
            "PATCH",
            [*exp, "@draft"],
            body={"name": "n", "description": "d", "variants": variants, "settings": {}},
        ),
        "delete": Request("DELETE", [*exp, "@paused"]),
        "warehouse-source": Request(
            "POST",
            ["api", "v1", "warehouse", "sources"],
            body={
                "name": "orders",
                "kind": "fact",
                "sql": "SELECT 'u' AS unit_id, TIMESTAMP '2024-01-01' AS timestamp, 1.5 AS amount",
                "description": "d",
                "dimensions": [],
                "columns": ["amount"],
            },
        ),
        "warehouse-sources": Request(
            "GET", ["api", "v1", "warehouse", "sources"], params={"kind": "fact"}
        ),
        "warehouse-source-get": Request("GET", ["api", "v1", "warehouse", "sources", "@orders"]),
        "warehouse-source-delete": Request(
            "DELETE", ["api", "v1", "warehouse", "sources", "@orders"]
        ),
        "warehouse-check": Request(
            "GET", ["api", "v1", "warehouse", "check"], params={"source": "orders"}
        ),
        "refresh": Request("POST", [*exp, "@ab", "refresh"], params={"wait": "false"}),
        "refresh-state": Request("GET", [*exp, "@ab", "refresh"]),
        "status": Request("PUT", [*exp, "@paused", "status"], body={"status": "running"}),
        "metrics": Request("GET", [*exp, "@ab", "metrics"]),
        "daily": Request(
            "POST",
            [*exp, "@bandit", "metrics"],
            body={
                "date": "2024-01-02",
                "metrics": [{"variant_name": "control", "impressions": 10, "clicks": 1}],
            },
        ),
        "assign": Request("POST", [*exp, "@ab", "assign"], body={"unit_id": "u-1"}),
        "assign-expose": Request(
            "POST",
            [*exp, "@ab", "assign"],
            body={"user_id": "u-1", "expose": True, "event_id": "e-9"},
        ),
        "end": Request(
            "POST", [*exp, "@paused", "end"], body={"winner": "control", "override": True}
        ),
        "sona": Request(
            "POST",
            [*exp, "conversions"],
            body={"experiment_id": "ab", "user_id": "u-1", "metric_name": "conversion"},
        ),
        "exposure": Request(
            "POST",
            [*exp, "@ab", "exposures"],
            body={"unit_id": "u-2", "variant": "control", "event_id": "e-1"},
        ),
        "conversion": Request(
            "POST",
            [*exp, "@ab", "conversions"],
            body={"unit_id": "u-1", "metric": "revenue", "value": 2.5, "event_id": "e-2"},
        ),
        "openinsight-convert": Request(
            "POST",
            [*exp, "@ab", "convert"],
            body={"unit_id": "u-1", "metric": "revenue", "value": 2.5, "event_id": "e-4"},
        ),
        "events": Request(
            "POST",
            ["api", "v1", "events"],
            body={
                "events": [
                    {"type": "exposure", "experiment_id": "ab", "unit_id": "u-3"},
                    {
                        "type": "conversion",
                        "experiment_id": "ab",
                        "unit_id": "u-3",
                        "metric": "conversion",
                        "event_id": "e-3",
                    },
                ]
            },
        ),
        "analysis": Request(
            "GET",
            [*exp, "@ab", "analysis"],
            params={"metric": "conversion", "correction": "bh", "alpha": "0.05"},
        ),
        "analyze": Request("GET", [*exp, "@ab", "analyze"], params={"sequential": "true"}),
        "sample-size": Request(
            "GET",
            ["api", "v1", "sample-size"],
            params={"baseline_rate": "0.1", "mde": "0.02", "alpha": "0.05", "power": "0.8"},
        ),
        "sample-size-mean": Request(
            "GET",
            ["api", "v1", "sample-size"],
            params={"baseline_mean": "10", "standard_deviation": "2", "mde": "0.5"},
        ),
        "allocation": Request("GET", [*exp, "@bandit", "allocation"]),
        "recalculate": Request("POST", [*exp, "@bandit", "recalculate"]),
        "history": Request("GET", [*exp, "@bandit", "history"]),
        "snapshots": Request("GET", [*exp, "@ab", "snapshots"]),
        "decide": Request(
            "POST",
            [*exp, "@ctx", "decide"],
            body={"unit_id": "u-1", "context": {"time_of_day": "evening", "user_type": "new"}},
        ),
        "feedback": Request(
            "POST",
            [*exp, "@ctx", "feedback"],
            body={"decision_id": decision, "event": "rating", "value": 3.0},
        ),
        "bandit-stats": Request("GET", [*exp, "@ctx", "bandit", "stats"]),
        "performance": Request("GET", [*exp, "@ctx", "performance"], params={"days": "7"}),
        "offpolicy": Request("GET", [*exp, "@ctx", "offpolicy"], params={"policy": "uniform"}),
        "interleave": Request(
            "POST",
            [*exp, "@il", "interleave"],
            body={"unit_id": "u-1", "ranking_a": ["d1", "d2"], "ranking_b": ["d2", "d3"]},
        ),
        "clicks": Request(
            "POST", [*exp, "@il", "clicks"], body={"impression_id": impression, "items": [item]}
        ),
        "datafile": Request("GET", ["datafile", "production", "@v2.json"]),
        "expose": Request(
            "POST",
            ["expose"],
            body={
                "datafile": DATAFILE,
                "features": {"checkoutButton": "treatment"},
                "unit_id": "u-1",
                "event_id": "fv-1",
            },
        ),
        "convert": Request(
            "POST",
            ["convert"],
            body={"datafile": DATAFILE, "features": {"checkoutButton": "treatment"}},
        ),
        "stats": Request(
            "GET", ["stats"], params={"datafile": DATAFILE, "feature": "checkoutButton"}
        ),
        "ofrep-one": Request(
            "POST",
            ["ofrep", "v1", "evaluate", "flags", "@ab"],
            body={"context": {"targetingKey": "u-9"}},
        ),
        "ofrep-bulk": Request(
            "POST", ["ofrep", "v1", "evaluate", "flags"], body={"context": {"targetingKey": "u-9"}}
        ),
    }


OPERATIONS = list(operations({"decision": "", "impression": "", "item": ""}))


# ---- the server -----------------------------------------------------------------------------


@dataclass
class Server:
    client: TestClient
    requests: dict[str, Request]

    def snapshot(self) -> Any:
        exported = self.client.app.state.service.transfer.export()  # type: ignore[attr-defined]
        exported.pop("exported_at", None)
        return exported


def _seed(client: TestClient) -> dict[str, str]:
    two = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]
    arms = [
        {"key": "control", "weight": 0.34},
        {"key": "a", "weight": 0.33},
        {"key": "b", "weight": 0.33},
    ]
    bodies: dict[str, dict[str, Any]] = {
        "ab": {
            "variants": two,
            "metrics": [{"key": "conversion"}, {"key": "revenue", "kind": "value"}],
        },
        "bandit": {"type": "bandit", "variants": arms},
        "ctx": {
            "type": "contextual_bandit",
            "variants": arms,
            "settings": {
                "contextual": {
                    "attributes": {
                        "time_of_day": ["morning", "evening"],
                        "user_type": ["new", "returning"],
                    }
                }
            },
        },
        "il": {"type": "interleaving", "variants": two},
        "draft": {"variants": two},
        "paused": {"variants": two},
    }
    for key, body in bodies.items():
        created = client.post(f"{API}/experiments", json={"key": key, **body})
        assert created.status_code == 201, created.text
        if key != "draft":
            started = client.put(f"{API}/experiments/{key}/status", json={"status": "running"})
            assert started.status_code == 200, started.text
    paused = client.put(f"{API}/experiments/paused/status", json={"status": "paused"})
    assert paused.status_code == 200, paused.text
    assert client.post(f"{API}/experiments/ab/assign", json={"unit_id": "u-1"}).status_code == 200
    decided = client.post(
        f"{API}/experiments/ctx/decide",
        json={"unit_id": "u-1", "context": {"time_of_day": "evening", "user_type": "new"}},
    )
    assert decided.status_code == 200, decided.text
    shown = client.post(
        f"{API}/experiments/il/interleave",
        json={"unit_id": "u-1", "ranking_a": ["d1", "d2"], "ranking_b": ["d2", "d3"]},
    )
    assert shown.status_code == 200, shown.text
    return {
        "decision": decided.json()["decision_id"],
        "impression": shown.json()["impression_id"],
        "item": shown.json()["items"][0]["item"],
    }


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One seeded server per store for every operation's cases (each case compares the store
    before and after itself, so the cases need no fresh store of their own)."""
    tmp_path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    root = tmp_path / "datafiles"
    (root / "production").mkdir(parents=True)
    shutil.copy(DATAFILES / "v2-production.json", root / DATAFILE)
    settings_ = Settings(
        store="memory",
        datafiles_dir=root,
        scheduler_enabled=False,
        experiment_cache_seconds=0,
        warehouse_url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
    )
    with backend_url(request.param, tmp_path) as (url, options):
        store = open_store(url, **options)
        try:
            with TestClient(create_app(settings_, store=store)) as client:
                yield Server(client, operations(_seed(client)))
        finally:
            store.close()


# ---- the property ---------------------------------------------------------------------------


def _is_error_shape(path: str, body: Any) -> bool:
    if path.startswith("/ofrep/") and isinstance(body, dict) and "errorCode" in body:
        return isinstance(body["errorCode"], str) and isinstance(body.get("errorDetails"), str)
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and (error.get("field") is None or isinstance(error["field"], str))
    )


def _check(server: Server, operation: str, data: st.DataObject) -> None:
    valid = server.requests[operation]
    target = data.draw(st.sampled_from(valid.targets()), label="target")
    hostile = data.draw(HOSTILE, label="hostile")
    request = valid.with_value(target, hostile.value)
    mutating = request.method != "GET"
    before = server.snapshot() if mutating else None

    response = request.send(server.client)

    where = f"{operation} {target}: {hostile.kind} -> {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert _is_error_shape(str(response.request.url.path), response.json()), where
        if mutating:
            assert server.snapshot() == before, f"a refused request changed the store: {where}"
    if (hostile.refused and target[0] != "params") or hostile.kind in {"surrogate", "nul"}:
        assert 400 <= response.status_code < 500, where
    assert server.client.get("/healthz").status_code == 200


@pytest.mark.parametrize("operation", OPERATIONS)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_input_is_refused_cleanly(
    server: Server, operation: str, data: st.DataObject
) -> None:
    _check(server, operation, data)


def test_every_operation_of_the_api_is_driven() -> None:
    """A route added to the API without a request here would escape the property."""
    app = create_app(Settings(store="memory"))
    driven = {
        (r.method, "/" + "/".join(s.removeprefix("@") for s in r.path))
        for r in operations({"decision": "", "impression": "", "item": ""}).values()
    }
    # Routes that read no input at all.
    skipped = {"/healthz", "/readyz", "/metrics", "/api/v1/recalculate", "/recalculate"}
    skipped |= {"/api/v1/monitoring/report", "/api/v1/session"}
    missing = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if path in skipped or path.startswith("/api/v1/monitoring/reports"):
                continue
            pattern = path.replace("{experiment_id}", "*").replace("{key}", "*")
            pattern = pattern.replace("{path}", "*")
            if not any(m == method.upper() and _matches(pattern, p) for m, p in driven):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"operations without a hostile-input request: {missing}"


def _matches(pattern: str, path: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(path, pattern)


def test_json_tokens_are_what_they_claim() -> None:
    """The raw tokens really reach the server as non-finite numbers (Python reads them so)."""
    decoded = json.loads(encode({"x": ["<NaN>", "<1e309>"]}))
    assert math.isnan(decoded["x"][0])
    assert math.isinf(decoded["x"][1])
