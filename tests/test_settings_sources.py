"""Settings as the systems abpilot replaces write them: FeatureVisor Pilot's ``.env`` (REDIS_HOST,
REDIS_PORT, REDIS_DB, REDIS_PASSWORD and no STORE) chooses Redis, against a password-protected
redis-server of the test's own; the Multi-Armed Bandit Optimization API's API_HOST and API_PORT
are HOST and PORT, and its THOMPSON_SAMPLES is the number of Monte Carlo draws the allocation
really makes."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from abpilot.api import create_app
from abpilot.cli import app as cli
from abpilot.settings import Settings
from tests.protected_redis import protected_redis

# Every variable that chooses a store or a listening address, cleared for each test so that the
# machine's own environment cannot decide the outcome.
CHOOSING = (
    "STORE",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_CLUSTER",
    "REDIS_PASSWORD",
    "REDIS_PREFIX",
    "HOST",
    "PORT",
    "API_HOST",
    "API_PORT",
    "THOMPSON_SAMPLES",
)

# FeatureVisor Pilot's documented .env, as its users have it (DATAFILES_DIR with its comment).
PILOT_ENV = """\
# Redis Configuration
REDIS_HOST=redis
REDIS_PORT=6379
REDIS_DB=0
REDIS_PASSWORD=yourpassword

# Application Configuration
DATAFILES_DIR=/app/dist  # Path to built datafiles
UPDATE_INTERVAL_MINUTES=30
MIN_EXPOSURES_FOR_UPDATE=100

# Flask Configuration
HOST=0.0.0.0
PORT=5050
DEBUG=False
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CHOOSING:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env but the test's own


@pytest.mark.parametrize(
    ("env", "store", "why"),
    [
        ({}, "sql", "the default: no STORE, DATABASE_URL, REDIS_URL or REDIS_HOST set"),
        ({"REDIS_HOST": "redis"}, "redis", "STORE and DATABASE_URL are not set and REDIS_HOST is"),
        (
            {"REDIS_URL": "redis://cache:6380/2"},
            "redis",
            "STORE and DATABASE_URL are not set and REDIS_URL is",
        ),
        ({"REDIS_PORT": "6380", "REDIS_PASSWORD": "x"}, "sql", "the default"),  # no host: no
        (
            {"REDIS_HOST": "redis", "DATABASE_URL": "sqlite:///./x.db"},
            "sql",
            "STORE is not set and DATABASE_URL is (it wins over the REDIS_* settings)",
        ),
        ({"REDIS_HOST": "redis", "STORE": "sql"}, "sql", "STORE=sql"),
        ({"REDIS_HOST": "redis", "STORE": "memory"}, "memory", "STORE=memory"),
        ({"REDIS_HOST": ""}, "sql", "the default"),
    ],
)
def test_which_store_and_why(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], store: str, why: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.store == store
    assert why in settings.store_choice()


def test_featurevisor_pilots_env_file_works_as_it_is(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(PILOT_ENV)
    settings = Settings()
    assert settings.store == "redis"
    assert settings.store_url() == "redis://:yourpassword@redis:6379/0"
    assert settings.store_choice() == (
        "store: Redis at redis://:***@redis:6379/0 "
        "(STORE and DATABASE_URL are not set and REDIS_HOST is)"
    )  # the log names the choice, never the password
    assert (settings.host, settings.port, settings.debug) == ("0.0.0.0", 5050, False)
    assert settings.datafiles_dir == Path("/app/dist")
    assert (settings.update_interval_minutes, settings.min_exposures_for_update) == (30, 100)


def test_a_password_with_reserved_characters_is_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss:w/rd#1")
    settings = Settings()
    assert settings.store_url() == "redis://:p%40ss%3Aw%2Frd%231@redis:6379/0"
    assert "p%40ss" not in settings.store_choice()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"REDIS_HOST": "node1", "REDIS_PORT": "7000"}, "redis+cluster://node1:7000"),
        ({"REDIS_URL": "redis://node1:7000"}, "redis+cluster://node1:7000"),
        ({"REDIS_URL": "rediss://:pw@node1:7000"}, "rediss+cluster://:pw@node1:7000"),
        ({"REDIS_URL": "redis+cluster://node1:7000"}, "redis+cluster://node1:7000"),
    ],
)
def test_redis_cluster_makes_the_url_a_cluster_url(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str
) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.store == "redis"
    assert settings.store_url() == url


def test_redis_password_reaches_a_protected_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """REDIS_HOST, REDIS_PORT, REDIS_DB and REDIS_PASSWORD alone, against a redis-server that
    requires the password: the app and the CLI store and read there."""
    password = "yourpassword:with/@#"
    with protected_redis(password, tmp_path) as server:
        import redis

        with pytest.raises(redis.AuthenticationError):
            server.client(password="wrong").ping()  # the server really is protected
        monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
        monkeypatch.setenv("REDIS_PORT", str(server.port))
        monkeypatch.setenv("REDIS_DB", "3")
        monkeypatch.setenv("REDIS_PASSWORD", password)
        settings = Settings(scheduler_enabled=False)
        body = {
            "key": "pilot-check",
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        }
        app = create_app(settings)  # the app logs to its own handler: listen there too
        logging.getLogger("abpilot").addHandler(caplog.handler)
        try:
            with TestClient(app) as client:
                assert client.get("/readyz").status_code == 200
                assert client.post("/api/v1/experiments", json=body).status_code == 201
        finally:
            logging.getLogger("abpilot").removeHandler(caplog.handler)
        chosen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("store: ")]
        assert chosen == [
            f"store: Redis at redis://:***@127.0.0.1:{server.port}/3 "
            "(STORE and DATABASE_URL are not set and REDIS_HOST is)"
        ]
        stored = server.client(db=3)
        assert stored.hget("abp:index:keys", "pilot-check") is not None
        stored.close()

        exported = CliRunner().invoke(cli, ["export", "--output", str(tmp_path / "out.json")])
        assert exported.exit_code == 0, exported.output
        document = json.loads((tmp_path / "out.json").read_text())
        assert [e["definition"]["key"] for e in document["experiments"]] == ["pilot-check"]

        monkeypatch.setenv("REDIS_PASSWORD", "wrong")
        with TestClient(create_app(Settings(scheduler_enabled=False))) as client:
            assert client.get("/readyz").status_code == 503  # refused: no silent SQLite


def test_db_upgrade_leaves_sqlite_alone_when_redis_is_chosen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Docker image migrates before serving unless STORE=redis: with only REDIS_HOST set
    there is no SQL schema to create (and no ./abpilot.db to write)."""
    monkeypatch.setenv("REDIS_HOST", "redis")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "nothing to upgrade: store: Redis at redis://redis:6379/0" in result.output
    assert not (tmp_path / "abpilot.db").exists()
    url = f"sqlite:///{tmp_path / 'asked.db'}"  # a URL given on the command line is upgraded
    assert CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url]).exit_code == 0
    assert (tmp_path / "asked.db").is_file()


def test_api_host_and_api_port_are_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Multi-Armed Bandit Optimization API's names; HOST and PORT win when both are set."""
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.setenv("API_PORT", "8123")
    assert (Settings().host, Settings().port) == ("0.0.0.0", 8123)
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("HOST", "127.0.0.2")
    assert (Settings().host, Settings().port) == ("127.0.0.2", 9000)
    assert Settings(port=7000).port == 7000  # by name, as the tests and the CLI pass it


def test_a_bad_api_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "eighty")
    result = CliRunner().invoke(cli, ["recalculate", "--store-url", "memory://"])
    assert result.exit_code == 2
    assert "PORT or API_PORT: Input should be a valid integer" in result.output


def test_a_redis_wait_timeout_of_zero_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis's WAIT with a timeout of 0 never returns while a replica is missing."""
    monkeypatch.setenv("REDIS_WAIT_TIMEOUT_MS", "0")
    result = CliRunner().invoke(cli, ["recalculate", "--store-url", "memory://"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())  # rich wraps the message at the terminal's width
    assert "REDIS_WAIT_TIMEOUT_MS: Input should be greater than or equal to 1" in said


def test_the_postgres_pool_settings_size_each_worker_s_pools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DATABASE_POOL_SIZE and DATABASE_MAX_OVERFLOW size the pools a worker opens on PostgreSQL:
    the transactions' pool and the one-statement paths' autocommit twin."""
    from abpilot.service.compose import open_store
    from abpilot.store.sql import SqlStore
    from abpilot.store.sql.engine import autocommit_twin
    from tests.conftest import backend_url

    with backend_url("postgres", tmp_path) as (url, _):
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
        monkeypatch.setenv("DATABASE_MAX_OVERFLOW", "1")
        store = open_store(Settings())
        assert isinstance(store, SqlStore)
        twin = autocommit_twin(store.engine)
        assert twin is not None
        pools = [store.engine.pool, twin.pool]
        assert [(p.size(), p._max_overflow) for p in pools] == [(3, 1), (3, 0)]  # type: ignore[attr-defined]
        store.close()


def test_a_pool_of_no_connections_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", "0")
    result = CliRunner().invoke(cli, ["recalculate", "--store-url", "memory://"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "DATABASE_POOL_SIZE: Input should be greater than or equal to 1" in said


def monte_carlo_bandit(client: Any) -> None:
    """A three-arm bandit with Monte Carlo weights and one day of totals."""
    body = {
        "key": "hero",
        "type": "bandit",
        "variants": [
            {"key": "control", "weight": 0.34},
            {"key": "variant_a", "weight": 0.33},
            {"key": "variant_b", "weight": 0.33},
        ],
        "settings": {"bandit": {"method": "monte_carlo", "prior_alpha": 1, "prior_beta": 99}},
    }
    assert client.post("/api/v1/experiments", json=body).status_code == 201
    client.put("/api/v1/experiments/hero/status", json={"status": "running"})
    day = {
        "date": (datetime.now(UTC).date() - timedelta(days=1)).isoformat(),  # in the window
        "metrics": [
            {"variant_name": "control", "impressions": 1000, "clicks": 32},
            {"variant_name": "variant_a", "impressions": 1000, "clicks": 38},
            {"variant_name": "variant_b", "impressions": 1000, "clicks": 36},
        ],
    }
    assert client.post("/api/v1/experiments/hero/metrics", json=day).status_code == 200


def reference_probability_best(seed: int, samples: int) -> list[float]:
    """P(best) of the three arms from ``samples`` joint Beta draws of numpy's generator seeded
    with ``seed`` (the posteriors Beta(1 + clicks, 99 + impressions - clicks))."""
    a = np.array([1 + 32, 1 + 38, 1 + 36])
    b = np.array([99 + 968, 99 + 962, 99 + 964])
    draws = np.random.default_rng(seed).beta(a, b, size=(samples, 3))
    return (np.bincount(draws.argmax(axis=1), minlength=3) / samples).tolist()


def test_thompson_samples_is_the_number_of_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THOMPSON_SAMPLES", "2500")
    with TestClient(create_app(Settings(store="memory", scheduler_enabled=False))) as client:
        monte_carlo_bandit(client)
        assert client.post("/api/v1/experiments/hero/recalculate").json()["status"] == "updated"
        (change,) = client.get("/api/v1/experiments/hero/history").json()["weight_changes"]
    assert (change["method"], change["details"]["samples"]) == ("monte_carlo", 2500)
    stored = [
        change["details"]["arms"][k]["probability_best"]
        for k in ("control", "variant_a", "variant_b")
    ]
    assert stored == reference_probability_best(change["seed"], 2500)
    assert stored != reference_probability_best(change["seed"], 10_000)  # not the default


def test_thompson_samples_reaches_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mab.db'}"
    with TestClient(create_app(Settings(database_url=url, scheduler_enabled=False))) as client:
        monte_carlo_bandit(client)
    monkeypatch.setenv("THOMPSON_SAMPLES", "400")
    result = CliRunner().invoke(cli, ["recalculate", "hero", "--store-url", url])
    assert result.exit_code == 0, result.output
    import abpilot

    service = abpilot.open(url)
    (change,), _ = service.get_history("hero")
    service.store.close()
    assert change.details["samples"] == 400
    arms = change.details["arms"]
    stored = [arms[k]["probability_best"] for k in ("control", "variant_a", "variant_b")]
    assert stored == reference_probability_best(change.seed, 400)
