"""``abpilot.Client`` against the real ``abpilot serve``: every verb, typed errors, API keys, and
retries through a flaky proxy (503s, lost replies, timeouts) that forwards to the real server."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import abpilot
from abpilot.service import EventInput
from abpilot.service.allocation import DailyInput
from abpilot.store.base import EventKind
from tests.e2e.server import free_port, running_server

AB = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
METRICS = [{"key": "conversion"}, {"key": "revenue", "kind": "value"}]


def server_env(directory: Path, **extra: str) -> dict[str, str]:
    database = f"sqlite:///{directory / 'client.db'}"
    return {"STORE": "sql", "DATABASE_URL": database, "SCHEDULER_ENABLED": "false", **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("client")
    with running_server(server_env(directory, API_KEYS=""), directory) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[abpilot.Client]:
    with abpilot.Client(server) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_events_take_openinsight_names_as_the_python_api_does(client: abpilot.Client) -> None:
    key = unique("aliases")
    client.create_experiment(key=key, variants=AB, metrics=METRICS)
    client.start_experiment(key)
    variant = client.get_variant_for_user(key, "user-1")["variant"]["key"]
    exposed = client.record_exposure(experiment_id=key, unit_id="user-1", variant_id=variant)
    converted = client.record_conversion(experiment_id=key, unit_id="user-1", variant_id=variant)
    assert (exposed["applied"], converted["applied"]) == (1, 1)
    by_key = {v["key"]: v for v in client.get_metrics(key)["variants"]}
    assert by_key[variant]["exposures"] == 1
    assert by_key[variant]["metrics"]["conversion"]["count"] == 1
    # Both names given and different: refused before anything is sent, naming the alias.
    with pytest.raises(abpilot.ValidationError, match="experiment_id"):
        client.record_exposure(experiment=key, experiment_id="other", unit_id="user-1")
    with pytest.raises(abpilot.ValidationError, match="experiment"):
        client.record_conversion(unit_id="user-1")


def running(client: abpilot.Client, **spec: Any) -> dict[str, Any]:
    spec.setdefault("variants", AB)
    created = client.create_experiment(key=unique(spec.pop("prefix", "exp")), **spec)
    return client.start_experiment(created["key"])


def exposures(client: abpilot.Client, experiment: str) -> int:
    return sum(v["exposures"] for v in client.get_metrics(experiment)["variants"])


# every verb -----------------------------------------------------------------------------------


def test_round_trip(client: abpilot.Client) -> None:
    key = unique("checkout")
    created = client.create_experiment(key=key, variants=AB, metrics=METRICS, name="Checkout")
    assert (created["key"], created["status"], created["name"]) == (key, "draft", "Checkout")
    assert client.get_experiment(created["id"]) == client.get_experiment(key)
    assert key in {e["key"] for e in client.list_experiments("draft")}
    assert client.update_experiment(key, description="green button")["description"] == (
        "green button"
    )
    assert client.start_experiment(key)["status"] == "running"

    first = client.get_variant_for_user(key, "user-1")
    assert first == client.get_variant_for_user(key, "user-1")
    variant = first["variant"]["key"]
    assert client.record_exposure(experiment=key, unit_id="user-1") == {
        "received": 1,
        "applied": 1,
        "duplicates": 0,
    }
    client.record_conversion(experiment=key, unit_id="user-1", event_id="order-1")
    again = client.record_conversion(experiment=key, unit_id="user-1", event_id="order-1")
    assert (again["applied"], again["duplicates"]) == (0, 1)
    at = datetime.now(UTC) - timedelta(minutes=1)
    client.record_conversion(
        experiment=key, unit_id="user-1", metric="revenue", value=42.5, timestamp=at
    )

    by_key = {v["key"]: v for v in client.get_metrics(key)["variants"]}
    assert by_key[variant]["exposures"] == 1
    assert by_key[variant]["metrics"]["conversion"]["count"] == 1
    assert by_key[variant]["metrics"]["revenue"]["sum"] == 42.5
    analysis = client.analyze_experiment(key, metric="revenue", correction="bh", sequential=True)
    assert (analysis["metric"], analysis["correction"], analysis["sequential"]) == (
        "revenue",
        "bh",
        True,
    )
    assert {v["key"] for v in analysis["variants"]} == {"a", "b"}

    assert client.pause_experiment(key)["status"] == "paused"
    assert client.resume_experiment(key)["status"] == "running"
    ended = client.end_experiment(key, winner="b", override=True)
    assert (ended["status"], ended["winner"]) == ("completed", "b")
    client.delete_experiment(key)
    with pytest.raises(abpilot.ExperimentNotFound):
        client.get_experiment(key)


def test_end_without_a_winner_takes_the_analysis_winner(client: abpilot.Client) -> None:
    key = running(client)["key"]
    expected = client.analyze_experiment(key)["winner"]  # too little data: none
    ended = client.end_experiment(key)
    assert (ended["status"], ended["winner"]) == ("completed", expected)


def test_record_events_adds_event_ids(client: abpilot.Client) -> None:
    key = running(client, metrics=METRICS)["key"]
    client.get_variant_for_user(key, "u1")
    batch: list[EventInput | dict[str, Any]] = [
        EventInput(kind=EventKind.EXPOSURE, experiment=key, unit_id="u1", event_id="e-1"),
        {"type": "conversion", "experiment_id": key, "unit_id": "u1", "metric": "conversion"},
    ]
    assert client.record_events(batch) == {"received": 2, "applied": 2, "duplicates": 0}
    # The caller's id repeats; the generated one is new on each call (a new conversion).
    assert client.record_events(batch) == {"received": 2, "applied": 1, "duplicates": 1}
    assert exposures(client, key) == 1


def test_bandit_verbs(client: abpilot.Client) -> None:
    arms = [
        {"key": "control", "weight": 0.34, "is_control": True},
        {"key": "variant_a", "weight": 0.33},
        {"key": "variant_b", "weight": 0.33},
    ]
    settings = {"bandit": {"prior_alpha": 1, "prior_beta": 99}}
    key = running(client, type="bandit", variants=arms, settings=settings)["key"]
    day = date.today() - timedelta(days=1)
    rows: list[DailyInput | dict[str, Any]] = [
        DailyInput("control", 10_000, 320),
        {"variant_name": "variant_a", "impressions": 10_000, "clicks": 420},
        DailyInput("variant_b", 10_000, 380),
    ]
    stored = client.record_daily_metrics(key, day=day, metrics=rows)
    assert (stored["date"], len(stored["stored"])) == (day.isoformat(), 3)
    allocations = client.get_allocation(key)["allocations"]
    split = {a["variant_name"]: a["allocation_percentage"] for a in allocations}
    assert max(split, key=lambda arm: split[arm]) == "variant_a"
    assert client.recalculate(key)["status"] == "updated"
    assert isinstance(client.recalculate_all(), list)
    history = client.get_history(key)
    assert ([c["period"] for c in history["weight_changes"]], len(history["daily_metrics"])) == (
        [1],
        3,
    )


def test_contextual_verbs(client: abpilot.Client) -> None:
    arms = [{"key": k, "weight": 0.5, "config": {"model": k}} for k in ("svd", "graph")]
    settings = {"contextual": {"attributes": {"device": ["mobile", "desktop"]}}}
    key = running(client, type="contextual_bandit", variants=arms, metrics=[], settings=settings)[
        "key"
    ]
    decision = client.decide(key, unit_id="user-1", context={"device": "mobile"})
    assert decision["config"] == {"model": decision["arm"]}
    click = {"decision_id": decision["decision_id"], "event": "click"}
    assert client.feedback(key, **click)["applied"] is True
    assert client.feedback(key, **click)["applied"] is False  # once per decision and event
    by_unit = client.feedback(key, unit_id="user-1", event="thumbs-up")  # its latest decision
    assert (by_unit["decision_id"], by_unit["event"]) == (decision["decision_id"], "thumbs_up")
    with pytest.raises(abpilot.NotFound) as caught:
        client.feedback(key, unit_id="user-2", event="click")
    assert caught.value.field == "unit_id"
    stats = client.bandit_stats(key, days=7)
    assert (stats["overall"]["decisions"], stats["overall"]["successes"]) == (1, 1)
    days = client.performance(key, days=3)["days"]
    assert [d["overall"]["decisions"] for d in days] == [1]  # the days with decisions
    assert client.offpolicy(key, policy="uniform")["decisions"] == 1


def test_interleaving_verbs(client: abpilot.Client) -> None:
    key = running(client, type="interleaving", variants=AB, metrics=[])["key"]
    request: dict[str, Any] = {
        "unit_id": "user-1",
        "ranking_a": ["d1", "d2"],
        "ranking_b": ["d2", "d3"],
    }
    shown = client.interleave(key, **request, seed="s1")
    assert client.interleave(key, **request, seed="s1") == shown
    first = shown["items"][0]["item"]
    clicked = client.record_clicks(key, impression_id=shown["impression_id"], items=[first])
    assert (clicked["credited"], clicked["repeated"]) == (1, 0)
    analysis = client.analyze_experiment(key)
    assert (analysis["type"], analysis["impressions"]) == ("interleaving", 1)


def test_ready_and_close(server: str) -> None:
    with abpilot.Client(server + "/") as client:
        client.ready()
    with pytest.raises(RuntimeError):  # closed
        client.ready()
    with pytest.raises(ValueError, match="http://"):
        abpilot.Client("localhost:8000")


def test_readme_example(server: str, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", readme.split("## HTTP client", 1)[1], re.S)
    assert found, "no python block in the README's HTTP client section"
    script = found.group(1).replace("http://localhost:8000", server)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "invalid_transition status cannot move" in done.stdout


# typed errors ---------------------------------------------------------------------------------


def test_validation_errors_keep_message_and_field(client: abpilot.Client) -> None:
    with pytest.raises(abpilot.ValidationError) as caught:
        client.create_experiment(key=unique("w"), variants=[{"key": "a", "weight": 0.5}] * 2)
    assert caught.value.message == "variant keys must be unique ('a' appears twice)"
    assert caught.value.field == "variants[1].key"
    uneven = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}]
    with pytest.raises(abpilot.ValidationError, match=r"sum to 1\.0") as caught:
        client.create_experiment(key=unique("w"), variants=uneven)
    assert (caught.value.status_code, caught.value.field) == (422, "variants")
    with pytest.raises(abpilot.ValidationError) as caught:  # refused by the request schema
        client.create_experiment(key="not a key!", variants=AB)
    assert caught.value.field == "key"
    key = running(client)["key"]
    with pytest.raises(abpilot.ValidationError) as caught:
        client.analyze_experiment(key, alpha=2)
    assert caught.value.field == "alpha"


def test_not_found_and_conflicts(client: abpilot.Client) -> None:
    with pytest.raises(abpilot.ExperimentNotFound) as missing:
        client.get_experiment("no-such-experiment")
    assert (missing.value.code, missing.value.status_code) == ("experiment_not_found", 404)
    assert "no-such-experiment" in missing.value.message

    key = running(client, metrics=METRICS)["key"]
    with pytest.raises(abpilot.DuplicateKey):
        client.create_experiment(key=key, variants=AB)
    with pytest.raises(abpilot.UnitNotAssigned) as unassigned:
        client.record_conversion(experiment=key, unit_id="stranger")
    assert unassigned.value.field == "unit_id"
    with pytest.raises(abpilot.WrongStatus):
        client.delete_experiment(key)
    client.end_experiment(key, winner="a", override=True)
    with pytest.raises(abpilot.InvalidTransition) as moved:
        client.start_experiment(key)
    assert (moved.value.status_code, moved.value.field) == (409, "status")
    assert isinstance(moved.value, abpilot.Conflict)


# API keys -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("secured")
    with running_server(server_env(directory, API_KEYS="admin:adm,read:rd"), directory) as url:
        yield url


def test_api_keys(secured: str) -> None:
    with abpilot.Client(secured, "adm") as admin:
        key = admin.create_experiment(key=unique("keys"), variants=AB)["key"]
    with abpilot.Client(secured, "rd") as reader:
        assert reader.get_experiment(key)["key"] == key
        with pytest.raises(abpilot.ClientAuthError) as forbidden:
            reader.create_experiment(key=unique("keys"), variants=AB)
    assert (forbidden.value.status_code, forbidden.value.code) == (403, "forbidden")
    assert "admin" in forbidden.value.message
    for api_key in (None, "wrong"):
        with (
            abpilot.Client(secured, api_key) as anonymous,
            pytest.raises(abpilot.ClientAuthError) as refused,
        ):
            anonymous.list_experiments()
        assert (refused.value.status_code, refused.value.code) == (401, "unauthorized")


# retries --------------------------------------------------------------------------------------


class Flaky(ThreadingHTTPServer):
    """A proxy to the real server that answers 503 to the next ``failures`` requests (after
    forwarding them when ``forward_failed``: the reply is lost), and waits ``delay`` seconds
    before every answer."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.reset()

    def reset(self, failures: int = 0, *, forward_failed: bool = False, delay: float = 0) -> None:
        self.failures, self.forward_failed, self.delay = failures, forward_failed, delay
        self.seen: list[tuple[str, str, bytes]] = []
        self.forwarded = 0

    def wait_forwarded(self, count: int) -> None:
        """Wait for requests still on their way upstream (their client may have given up)."""
        for _ in range(200):
            if self.forwarded >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.forwarded} of {count} requests reached the server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.seen]


class FlakyHandler(BaseHTTPRequestHandler):
    server: Flaky

    def relay(self) -> None:
        flaky = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with flaky.lock:
            flaky.seen.append((self.command, self.path, body))
            fail = flaky.failures > 0
            flaky.failures -= fail
        status, content, content_type = 503, b"upstream unavailable", "text/plain"
        if not fail or flaky.forward_failed:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            response = httpx.request(
                self.command, flaky.upstream + self.path, content=body, headers=headers
            )
            with flaky.lock:
                flaky.forwarded += 1
            if not fail:
                status, content = response.status_code, response.content
                content_type = response.headers.get("content-type", "application/json")
        time.sleep(flaky.delay)
        with contextlib.suppress(ConnectionError):  # a client that timed out has gone
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay  # noqa: N815 (http.server names)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(server: str) -> Iterator[Flaky]:
    flaky = Flaky(server)
    thread = threading.Thread(target=flaky.serve_forever, daemon=True)
    thread.start()
    yield flaky
    flaky.shutdown()
    flaky.server_close()


@pytest.fixture
def flaky(proxy: Flaky) -> Iterator[abpilot.Client]:
    proxy.reset()
    with abpilot.Client(proxy.url, retries=3, backoff=0.01) as client:
        yield client


def test_reads_are_retried(client: abpilot.Client, proxy: Flaky, flaky: abpilot.Client) -> None:
    key = running(client)["key"]
    proxy.reset(2)
    assert flaky.get_experiment(key)["key"] == key
    assert [method for method, _, _ in proxy.seen] == ["GET"] * 3


def test_retries_run_out(proxy: Flaky, flaky: abpilot.Client) -> None:
    proxy.reset(10)
    with pytest.raises(abpilot.ServiceUnavailable) as caught:
        flaky.list_experiments()
    assert caught.value.status_code == 503
    assert isinstance(caught.value, abpilot.StoreUnavailable)
    assert len(proxy.seen) == 4  # the first attempt and three retries


def test_a_resent_exposure_counts_once(
    client: abpilot.Client, proxy: Flaky, flaky: abpilot.Client
) -> None:
    key = running(client)["key"]
    client.get_variant_for_user(key, "user-1")
    proxy.reset(2, forward_failed=True)  # applied twice on the server, both replies lost
    result = flaky.record_exposure(experiment=key, unit_id="user-1")  # no event_id given
    assert (result["applied"], result["duplicates"]) == (0, 1)
    event_ids = {body["event_id"] for body in proxy.bodies()}
    assert len(proxy.seen) == 3
    assert len(event_ids) == 1
    assert exposures(client, key) == 1

    proxy.reset(1, forward_failed=True)
    batch = [{"type": "exposure", "experiment_id": key, "unit_id": "user-1"}]
    assert flaky.record_events(batch)["duplicates"] == 1
    assert exposures(client, key) == 2  # the second exposure, counted once


def test_a_resent_assignment_with_exposure_counts_once(
    client: abpilot.Client, proxy: Flaky, flaky: abpilot.Client
) -> None:
    key = running(client)["key"]
    proxy.reset(2, forward_failed=True)  # applied twice on the server, both replies lost
    assigned = flaky.get_variant_for_user(key, "user-1", expose=True)  # no event_id given
    assert assigned["in_experiment"]
    assert len(proxy.seen) == 3
    assert len({body["event_id"] for body in proxy.bodies()}) == 1
    assert exposures(client, key) == 1
    assert client.get_variant_for_user(key, "user-1") == assigned


def test_create_from_names_with_experiment_type(client: abpilot.Client) -> None:
    """OpenInsight's create arguments through the HTTP client: no key, no weights."""
    name = unique("Homepage Button Color Test")
    created = client.create_experiment(
        name=name,
        variants=[{"name": "Blue Button"}, {"name": "Green Button"}],
        experiment_type="bandit",
    )
    assert created["key"] == name.lower().replace(" ", "-")
    assert created["type"] == "bandit"
    assert [(v["key"], v["weight"]) for v in created["variants"]] == [
        ("blue-button", 0.5),
        ("green-button", 0.5),
    ]


def test_creation_is_not_resent(
    client: abpilot.Client, proxy: Flaky, flaky: abpilot.Client
) -> None:
    key = unique("once")
    proxy.reset(1)
    with pytest.raises(abpilot.ServiceUnavailable) as caught:
        flaky.create_experiment(key=key, variants=AB)
    assert "upstream unavailable" in caught.value.message
    assert len(proxy.seen) == 1
    with pytest.raises(abpilot.ExperimentNotFound):
        client.get_experiment(key)


def test_a_timed_out_creation_is_not_resent(
    client: abpilot.Client, proxy: Flaky, server: str
) -> None:
    key = unique("slow")
    proxy.reset(delay=1.0)
    with (
        abpilot.Client(proxy.url, timeout=0.2, backoff=0.01) as impatient,
        pytest.raises(abpilot.ServiceUnavailable, match="may or may not") as caught,
    ):
        impatient.create_experiment(key=key, variants=AB)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(proxy.seen) == 1
    proxy.wait_forwarded(1)
    assert client.get_experiment(key)["status"] == "draft"  # it was created, once


def test_lost_replies_to_status_changes_and_deletes(
    client: abpilot.Client, proxy: Flaky, flaky: abpilot.Client
) -> None:
    key = client.create_experiment(key=unique("lost"), variants=AB)["key"]
    proxy.reset(1, forward_failed=True)
    assert flaky.start_experiment(key)["status"] == "running"  # the resend found it running
    client.pause_experiment(key)
    proxy.reset(1, forward_failed=True)
    flaky.delete_experiment(key)  # the resend found it gone: done
    with pytest.raises(abpilot.ExperimentNotFound):
        client.get_experiment(key)


def test_no_server() -> None:
    with abpilot.Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01) as client:
        with pytest.raises(abpilot.ServiceUnavailable, match="3 attempt") as caught:
            client.create_experiment(key="x", variants=AB)  # never sent, so retried
        assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_unit_facts_and_the_new_metric_fields(client: abpilot.Client) -> None:
    metrics = [
        {"key": "revenue", "kind": "value", "covariate": "pre", "cap": {"absolute": 50}},
        {"key": "orders"},
        {"key": "rpo", "kind": "ratio", "numerator": "revenue", "denominator": "orders"},
    ]
    created = running(client, metrics=metrics, dimensions=["country"])
    key = created["key"]
    assert created["dimensions"] == ["country"]
    assert created["metrics"][0]["cap"] == {"absolute": 50}
    exposed = client.record_exposure(
        experiment=key, unit_id="u1", covariates={"pre": 2.5}, dimensions={"country": "nl"}
    )
    assigned = client.get_variant_for_user(
        key, "u2", expose=True, covariates={"pre": 1.0}, dimensions={"country": "de"}
    )
    batch = client.record_events(
        [EventInput(EventKind.EXPOSURE, key, "u3", covariates={"pre": 0.5})]
    )
    assert (exposed["applied"], assigned["in_experiment"], batch["applied"]) == (1, True, 1)
    with pytest.raises(abpilot.ValidationError) as caught:
        client.record_exposure(experiment=key, unit_id="u4", covariates={"pre": "high"})
    assert caught.value.field == "covariates.pre"
    assert exposures(client, key) == 3
