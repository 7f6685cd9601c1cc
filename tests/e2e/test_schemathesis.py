"""Hostile input against the real `abpilot serve`: schemathesis fuzzes every operation of
``/openapi.json`` with valid and invalid requests. No request may get a 5xx, hang, or leave a
partial write behind a refusal; every response must match the schema (status code, content type
and body: errors are ``{"error": {"code", "message", "field"}}`` with a 4xx status).

The server is seeded first with experiments of every type in every state (and a FeatureVisor
datafile), so that path parameters, decision ids, impression ids, flag keys and datafile names hit
real objects: part of the cases get known values in place of generated ones, drawn by Hypothesis
in the fuzzing phase (schema hooks) and counted through in the examples and coverage phases (in
the test), where the part a negative case is about is left as generated.

It runs on every server store: SQLite, PostgreSQL and Redis (``ABPILOT_SCHEMATHESIS_STORES``, a
comma list, narrows it). Refused changes are checked against the store itself: on SQLite every
table of the file, on PostgreSQL and Redis everything the store exports; a mutating request
answered with an error must leave it as it was.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from abpilot.api import create_app
from abpilot.settings import Settings
from tests.conftest import backend_url
from tests.e2e.server import running_server
from tests.fixtures import FEATUREVISOR_DATAFILES

SEED = 20240601
# Per operation and store, in the fuzzing phase (examples and coverage come on top). The README's
# test command runs 40; .ci/run adds a deeper pass (ABPILOT_SCHEMATHESIS_EXAMPLES=100).
MAX_EXAMPLES = int(os.environ.get("ABPILOT_SCHEMATHESIS_EXAMPLES", "40"))
TIMEOUT = (5, 30)  # connect, read: a request that takes longer is a hang
API = "/api/v1"
DATAFILE = "production/datafile.json"
FEATURES = [{"checkoutButton": "treatment"}, {"checkoutButton": "control"}, {"pricingPage": "b"}]
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
STORES = os.environ.get("ABPILOT_SCHEMATHESIS_STORES", "sqlite,postgres,redis").split(",")
KEEP = None  # in a list of candidates: leave the generated value as it is

TYPES = ["ab_test", "bandit", "contextual_bandit", "interleaving"]
TWO = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]
ARMS = [
    {"key": "control", "weight": 0.34},
    {"key": "variant_a", "weight": 0.33},
    {"key": "variant_b", "weight": 0.33},
]
CONTEXTUAL = {
    "contextual": {
        "attributes": {"time_of_day": ["morning", "evening"], "user_type": ["new", "returning"]},
        "holdout": 0.25,
        "control": {"weights": {"control": 0.5, "variant_a": 0.5, "variant_b": 0.0}},
    }
}
CONTEXTS = [
    {"time_of_day": "evening", "user_type": "new"},
    {"time_of_day": "morning", "user_type": "returning"},
]
RANKINGS = (["d1", "d2", "d3", "d4", "d5"], ["d3", "d6", "d1", "d7", "d8"])


def body_of(key: str, kind: str) -> dict[str, Any]:
    """A valid creation body of each type, as in tests/api."""
    body: dict[str, Any] = {"key": key, "name": f"{kind} {key}", "type": kind}
    if kind == "ab_test":
        body["variants"] = [
            {"key": "control", "weight": 0.5, "config": {"colour": "blue"}},
            {"key": "treatment", "weight": 0.5, "config": {"colour": "green"}},
        ]
        body["metrics"] = [{"key": "conversion"}, {"key": "revenue", "kind": "value"}]
    elif kind == "bandit":
        body |= {"variants": ARMS, "metrics": [], "settings": {"bandit": {"prior_beta": 99}}}
    elif kind == "contextual_bandit":
        body |= {"variants": ARMS, "metrics": [], "settings": CONTEXTUAL}
    else:
        body |= {"variants": TWO, "metrics": []}
    return body


class Seeded:
    """What the server holds before fuzzing starts, and which of it each operation aims at."""

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {}  # role -> experiment keys (and ids)
        self.decisions: list[str] = []
        self.impressions: list[tuple[str, list[str]]] = []

    def experiments_for(self, method: str, path: str) -> list[str | None]:
        role = role_of(method, path)
        if role in {"patch", "delete", "status"}:  # lifecycle changes only touch their own
            return [*self.keys[role], KEEP]
        main = self.keys["main"]
        preferred = self.keys.get(role, main)
        return [*preferred, *preferred, *main, KEEP]


def role_of(method: str, path: str) -> str:
    tail = path.removeprefix(f"{API}/experiments/{{experiment_id}}")
    if tail == path:
        return "other"
    if tail == "":
        return {"PATCH": "patch", "DELETE": "delete"}.get(method.upper(), "main")
    if tail == "/status":
        return "status"
    if tail == "/metrics":
        return "ab" if method.upper() == "GET" else "bandit"
    roles = {
        "/assign": "ab",
        "/exposures": "ab",
        "/conversions": "ab",
        "/analysis": "ab",
        "/analyze": "ab",
        "/allocation": "bandit",
        "/recalculate": "bandit",
        "/history": "bandit",
        "/decide": "contextual",
        "/feedback": "contextual",
        "/bandit/stats": "contextual",
        "/performance": "contextual",
        "/offpolicy": "contextual",
        "/interleave": "interleaving",
        "/clicks": "interleaving",
    }
    return roles.get(tail, "main")


def seed(http: httpx.Client) -> Seeded:
    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code < 300, (response.request.url, response.text)
        found: dict[str, Any] = response.json()
        return found

    def create(key: str, kind: str, state: str) -> dict[str, Any]:
        created = ok(http.post(f"{API}/experiments", json=body_of(key, kind)))
        path = [] if state == "draft" else ["running"]
        path += {"paused": ["paused"], "completed": ["completed"]}.get(state, [])
        for status in path:
            created = ok(http.put(f"{API}/experiments/{key}/status", json={"status": status}))
        return created

    found = Seeded()
    ab = create("ab", "ab_test", "running")
    found.keys["main"] = ["ab", "bandit", "ctx", "search"]
    found.keys["ab"] = ["ab", "ab-paused", "ab-done", ab["id"]]
    bandit = create("bandit", "bandit", "running")
    found.keys["bandit"] = ["bandit", bandit["id"]]
    ctx = create("ctx", "contextual_bandit", "running")
    found.keys["contextual"] = ["ctx", ctx["id"]]
    search = create("search", "interleaving", "running")
    found.keys["interleaving"] = ["search", search["id"]]

    for i in range(20):
        unit = f"user-{i}"
        ok(http.post(f"{API}/experiments/ab/assign", json={"unit_id": unit}))
        ok(http.post(f"{API}/experiments/ab/exposures", json={"unit_id": unit}))
        if i % 3 == 0:
            event = {"unit_id": unit, "metric": "revenue", "value": 9.5}
            ok(http.post(f"{API}/experiments/ab/conversions", json=event))
            ok(http.post(f"{API}/experiments/ab/conversions", json={"unit_id": unit}))
    create("ab-paused", "ab_test", "paused")
    create("ab-done", "ab_test", "completed")

    today = datetime.now(UTC).date()
    for days_ago in range(3):
        day = (today - timedelta(days=days_ago)).isoformat()
        rows = [
            {"variant_name": arm["key"], "impressions": 1000, "clicks": 30 + 5 * n}
            for n, arm in enumerate(ARMS)
        ]
        ok(http.post(f"{API}/experiments/bandit/metrics", json={"date": day, "metrics": rows}))
    ok(http.post(f"{API}/experiments/bandit/recalculate"))

    for i in range(12):
        decided = ok(
            http.post(
                f"{API}/experiments/ctx/decide",
                json={"unit_id": f"user-{i}", "context": CONTEXTS[i % 2]},
            )
        )
        found.decisions.append(decided["decision_id"])
        if i % 2:
            feedback = {"decision_id": decided["decision_id"], "event": "click"}
            ok(http.post(f"{API}/experiments/ctx/feedback", json=feedback))

    for i in range(4):
        body = {"unit_id": f"user-{i}", "ranking_a": RANKINGS[0], "ranking_b": RANKINGS[1]}
        shown = ok(http.post(f"{API}/experiments/search/interleave", json=body))
        items = [item["item"] for item in shown["items"]]
        found.impressions.append((shown["impression_id"], items))
        if i % 2:
            click = {"impression_id": shown["impression_id"], "items": items[:1]}
            ok(http.post(f"{API}/experiments/search/clicks", json=click))

    ok(http.post("/expose", json={"datafile": DATAFILE, "features": FEATURES[0]}))

    # The lifecycle operations get experiments of their own, of every type and in every state.
    for role in ("patch", "delete", "status"):
        found.keys[role] = []
        for n, kind in enumerate(TYPES):
            for state in ("draft", ["running", "paused", "completed"][n % 3]):
                key = f"{role}-{kind.replace('_', '-')}-{state}"
                create(key, kind, state)
                found.keys[role].append(key)
    return found


# Substitutions: a `choice` (drawn by Hypothesis in the fuzzing phase, counted in the others)
# picks one of the candidates; index 0 of every candidate list leaves the generated value.


def pick(candidates: list[Any], choice: int) -> Any:
    return candidates[choice % len(candidates)]


def tweak_path(seeded: Seeded, method: str, path: str, params: Any, choice: int) -> Any:
    if not isinstance(params, dict):
        return params
    if "experiment_id" in params:
        found = pick([KEEP, *seeded.experiments_for(method, path)], choice)
        if found is not KEEP:
            params = {**params, "experiment_id": found}
    if path.startswith("/ofrep/") and "key" in params:  # a flag is an experiment
        found = pick([KEEP, *seeded.keys["main"], *seeded.keys["ab"]], choice)
        if found is not KEEP:
            params = {**params, "key": found}
    if path == "/datafile/{path}" and "path" in params:
        found = pick([KEEP, DATAFILE, DATAFILE], choice)
        if found is not KEEP:
            params = {**params, "path": found}
    return params


SAMPLE_SIZE_PLANS = [
    {"mde": 0.02, "baseline_rate": 0.1},
    {"mde": 0.1, "relative": "true", "baseline_rate": 0.3},
    {"mde": 1.5, "baseline_mean": 20.0, "standard_deviation": 4.0},
]


def tweak_query(path: str, query: Any, choice: int) -> Any:
    if not isinstance(query, dict):
        return query
    query = dict(query)
    if path == "/stats":
        if "datafile" in query:
            query["datafile"] = pick([query["datafile"], DATAFILE], choice)
        if "feature" in query:
            query["feature"] = pick([query["feature"], "checkoutButton", "pricingPage"], choice)
    elif path.endswith("/offpolicy") and "policy" in query:
        choices = [query["policy"], "control", "uniform", "greedy", "arm:variant_a", "arm:nope"]
        query["policy"] = pick(choices, choice)
    elif path.endswith(("/analysis", "/analyze")) and "metric" in query:
        query["metric"] = pick([query["metric"], "conversion", "revenue"], choice)
    elif path == f"{API}/sample-size" and choice % 4:
        # A valid plan, with alpha, power and the number of variants as generated.
        for name in ("mde", "baseline_rate", "baseline_mean", "standard_deviation", "relative"):
            query.pop(name, None)
        query.update(pick(SAMPLE_SIZE_PLANS, choice))
    return query


def tweak_event(event: dict[str, Any], choice: int) -> None:
    """Variant and metric as the seeded A/B test knows them, some of the time."""
    if "variant" in event:
        event["variant"] = pick([event["variant"], None, "control", "treatment"], choice)
    if "metric" in event:
        event["metric"] = pick([event["metric"], None, "conversion", "revenue"], choice // 2)
    if "timestamp" in event and choice % 2:
        event["timestamp"] = None


def tweak_create(body: dict[str, Any], choice: int) -> None:
    """Variants (and metrics and settings) valid for the body's type, the rest as generated."""
    kind = body.get("type") if body.get("type") in TYPES else "ab_test"
    valid = body_of("unused", str(kind))
    body["variants"] = valid["variants"]
    if choice % 3:
        body["metrics"] = valid["metrics"]
        body.pop("settings", None)
        if "settings" in valid:
            body["settings"] = valid["settings"]
    if choice % 2 and "traffic_allocation" in body:
        body["traffic_allocation"] = 0.5


def tweak_body(seeded: Seeded, path: str, body: Any, choice: int) -> Any:
    if not isinstance(body, dict) or choice % 4 == 0:
        return body
    body = copy.deepcopy(body)
    if path == f"{API}/experiments":
        tweak_create(body, choice)
    elif path == f"{API}/experiments/{{experiment_id}}" and isinstance(body.get("variants"), list):
        body["variants"] = pick([TWO, ARMS], choice)
    elif path.endswith("/status") and "winner" in body:
        body["winner"] = pick([body["winner"], None, "control"], choice)
    elif path.endswith("/feedback"):
        if "decision_id" in body:
            body["decision_id"] = pick(seeded.decisions, choice)
        if "event" in body and choice % 3:
            body["event"] = pick(["click", "rating"], choice)
            if body["event"] == "rating":
                body["value"] = float(choice % 6)
    elif path.endswith("/clicks") and "impression_id" in body:
        impression, items = pick(seeded.impressions, choice)
        body["impression_id"] = impression
        if choice % 3 and isinstance(body.get("items"), list):
            body["items"] = items[: 1 + choice % 3]
    elif path.endswith("/decide") and choice % 3:
        body["context"] = pick(CONTEXTS, choice)
    elif path.endswith("/metrics") and isinstance(body.get("metrics"), list):
        for n, row in enumerate(body["metrics"]):
            if isinstance(row, dict):
                row["variant_name"] = ARMS[(choice + n) % len(ARMS)]["key"]
    elif path.endswith(("/exposures", "/conversions")) and path != f"{API}/experiments/conversions":
        tweak_event(body, choice)
    elif path == f"{API}/events" and isinstance(body.get("events"), list):
        keys = seeded.keys["main"]
        for n, event in enumerate(body["events"]):
            if isinstance(event, dict):
                tweak_event(event, choice + n)
                if "experiment_id" in event:
                    event["experiment_id"] = keys[(choice + n) % len(keys)]
    elif path == f"{API}/experiments/conversions" and "experiment_id" in body:
        body["experiment_id"] = pick(seeded.keys["ab"], choice)
        if "metric_name" in body:
            body["metric_name"] = pick([body["metric_name"], None, "revenue"], choice)
    elif path.startswith("/ofrep/") and choice % 3:
        body["context"] = {"targetingKey": f"user-{choice}", "plan": "pro"}
    elif path in {"/expose", "/convert"}:
        if "datafile" in body:
            body["datafile"] = DATAFILE
        if "features" in body and choice % 3:
            body["features"] = pick(FEATURES, choice)
    return body


def tweak_case(seeded: Seeded, case: Any, choice: int) -> None:
    """The examples and coverage phases do not draw: a count picks the candidates instead, and
    the part that a negative case is about is left alone."""
    op = case.operation
    hostile = getattr(case.meta.phase.data, "parameter_location", None) if case.meta else None
    hostile = getattr(hostile, "value", hostile)
    if hostile != "path" and case.path_parameters:
        case.path_parameters = tweak_path(seeded, op.method, op.path, case.path_parameters, choice)
    if hostile != "query" and case.query:
        case.query = tweak_query(op.path, case.query, choice)
    if hostile != "body":
        case.body = tweak_body(seeded, op.path, case.body, choice)


class Server:
    """Filled in by the `server` fixture; the hooks read it when Hypothesis draws."""

    url = ""
    workdir = Path()  # the server's log is there
    backend = "sqlite"
    database = Path()  # SQLite's file
    store_url = ""  # PostgreSQL's or Redis's
    redis_prefix = ""
    seeded = Seeded()
    counters: ClassVar[dict[str, Iterator[int]]] = {}


def install_hooks(schema: Any) -> None:
    """Fuzzing-phase hooks: Hypothesis draws which known value (or none) takes the place of the
    generated one. Examples are drawn at collection, before the server is seeded: they are kept
    as generated here and tweaked in the test instead."""
    choices = st.integers(min_value=0, max_value=23)

    @schema.hook
    def flatmap_path_parameters(ctx: Any, params: Any) -> Any:
        if not Server.seeded.keys:
            return st.just(params)
        op = ctx.operation
        return choices.map(lambda c: tweak_path(Server.seeded, op.method, op.path, params, c))

    @schema.hook
    def flatmap_query(ctx: Any, query: Any) -> Any:
        return choices.map(lambda c: tweak_query(ctx.operation.path, query, c))

    @schema.hook
    def flatmap_body(ctx: Any, body: Any) -> Any:
        if not Server.seeded.keys:
            return st.just(body)
        return choices.map(lambda c: tweak_body(Server.seeded, ctx.operation.path, body, c))


def store_digest() -> str:
    """Everything the server's store holds, as one digest."""
    if Server.backend == "postgres":
        return postgres_digest(Server.store_url)
    if Server.backend == "redis":
        return redis_digest(Server.store_url, Server.redis_prefix)
    return database_digest(Server.database)


def postgres_digest(url: str) -> str:
    """Every row of every table in the server's schema (the URL's search_path)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        return tables_digest(
            db,
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() ORDER BY table_name",
        )


def redis_digest(url: str, prefix: str) -> str:
    """Every key under the server's prefix with its value, read by type."""
    import redis

    read = {
        b"string": lambda p, k: p.get(k),
        b"hash": lambda p, k: p.hgetall(k),
        b"set": lambda p, k: p.smembers(k),
        b"zset": lambda p, k: p.zrange(k, 0, -1, withscores=True),
        b"list": lambda p, k: p.lrange(k, 0, -1),
    }
    with redis.Redis.from_url(url) as client:
        keys = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types = pipe.execute()
        for key, kind in zip(keys, types, strict=True):
            read[kind](pipe, key)
        values = pipe.execute()
    digest = hashlib.sha256()
    for key, kind, value in zip(keys, types, values, strict=True):
        shown = sorted(value.items()) if isinstance(value, dict) else value
        shown = sorted(shown) if isinstance(shown, set) else shown
        digest.update(repr((key, kind, shown)).encode())
    return digest.hexdigest()


def database_digest(path: Path) -> str:
    """Everything the SQLite store holds, as one digest."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return tables_digest(
            db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )


def tables_digest(db: Any, list_tables: str) -> str:
    """Every row of every table ``list_tables`` names, on a DB-API connection with execute()."""
    digest = hashlib.sha256()
    for (table,) in list(db.execute(list_tables)):
        rows = sorted(repr(row) for row in db.execute(f'SELECT * FROM "{table}"'))
        digest.update(f"{table}:{len(rows)}:".encode())
        for row in rows:
            digest.update(row.encode())
    return digest.hexdigest()


@pytest.fixture(
    scope="module",
    autouse=True,
    # One xdist worker runs a store's cases (with --dist loadgroup): one server per store, and
    # the log check after its fuzzing.
    params=[pytest.param(s, marks=pytest.mark.xdist_group(f"schemathesis-{s}")) for s in STORES],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    tmp = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    datafiles = tmp / "datafiles"
    (datafiles / "production").mkdir(parents=True)
    shutil.copy(FEATUREVISOR_DATAFILES / "v2-production.json", datafiles / DATAFILE)
    env = {
        "SCHEDULER_ENABLED": "false",
        "DATAFILES_DIR": str(datafiles),
        # Read once at start-up: a poll in the background would write while a check compares.
        "DATAFILES_POLL_SECONDS": "86400",
    }
    backend = request.param
    with contextlib.ExitStack() as stack:
        url, options = stack.enter_context(backend_url(backend, tmp))
        if backend == "redis":
            env |= {"STORE": "redis", "REDIS_URL": url, "REDIS_PREFIX": options["prefix"]}
        else:
            env |= {"STORE": "sql", "DATABASE_URL": url}
        Server.backend, Server.store_url = backend, url
        Server.redis_prefix = options.get("prefix", "")
        base = stack.enter_context(running_server(env, tmp))
        http = stack.enter_context(httpx.Client(base_url=base, timeout=30))
        # The cases were generated from the app's schema; the server must serve the same one.
        assert http.get("/openapi.json").json() == RAW_SCHEMA
        Server.url, Server.workdir = base, tmp
        Server.database = Path(url.removeprefix("sqlite:///")) if backend == "sqlite" else Path()
        Server.seeded = seed(http)
        Server.counters.clear()
        yield


def no_partial_write(before: str) -> Callable[..., None]:
    def no_partial_write(ctx: Any, response: Any, case: Any) -> None:
        """A refused change leaves the store as it was."""
        refused = case.method.upper() in MUTATING and response.status_code >= 400
        if refused and store_digest() != before:
            raise AssertionError(
                f"Partial write: {case.method.upper()} {case.path} answered "
                f"{response.status_code} but the store changed"
            )

    return no_partial_write


# The schema is the app's own `/openapi.json`, built without a store (the fixture checks that the
# running server serves exactly this), so that pytest gets one test per operation at collection.
RAW_SCHEMA = create_app(Settings(store="memory", scheduler_enabled=False)).openapi()
schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
schema.config.seed = SEED
schema.config.generation.update(deterministic=True)
install_hooks(schema)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_hostile_input_is_refused_cleanly(case: Any) -> None:
    if case.meta is not None and case.meta.phase.name != "fuzzing":
        counter = Server.counters.setdefault(case.operation.label, itertools.count(1))
        tweak_case(Server.seeded, case, next(counter))
    before = store_digest() if case.method.upper() in MUTATING else ""
    response = case.call(base_url=Server.url, timeout=TIMEOUT)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            no_partial_write(before),
        ],
    )


def test_the_server_logged_no_traceback() -> None:
    """After the fuzzing (pytest keeps the file's order): nothing that was sent made the server
    log a traceback, whatever the answer was, not even after the response or in a thread."""
    text = "\n".join(log.read_text(errors="replace") for log in Server.workdir.glob("server-*.log"))
    assert text, "no server log found"
    if "Traceback" in text:
        lines = text.splitlines()
        what = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
        where = [line.partition("unexpected error on ")[2] for line in lines]
        summary = "\n".join(sorted(set(what)) + sorted(set(where) - {""})[:20])
        raise AssertionError(
            f"the server logged {text.count('Traceback')} traceback(s):\n{summary}"
        )
