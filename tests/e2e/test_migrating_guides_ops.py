"""The migration guides for FeatureVisor Pilot and Bandit Selector (docs/migrating/), run as
printed against a real `abpilot serve`, with the claims mechanism of test_readme.py.

- ``text`` blocks summarise the old system's requests: they are never run (there is no Pilot or
  Bandit Selector here) and are claimed by :func:`test_the_old_systems_blocks_are_text_only`.
- FeatureVisor Pilot's guide prints Pilot's port, ``localhost:5050``; that base URL becomes the
  test server's, as ``localhost:8000`` does in the README. Its ``.env`` block is written as the
  server directory's ``.env`` with four values pointed at the test's own machine: ``REDIS_HOST``
  and ``REDIS_PORT`` at a password-protected redis-server the test starts (with Pilot's password,
  ``yourpassword``, unchanged), ``PORT`` at a free port and ``DATAFILES_DIR`` at a build
  directory holding Pilot's datafile ``production/datafile.json`` (features ``checkout_button``
  and ``header_color``, as Pilot's requests name them). The compose file's ``abpilot``
  environment is applied the same way to `abpilot serve` (no Docker engine runs here), with the
  password of its ``redis`` service's ``--requirepass``.
- Bandit Selector's guide runs on PostgreSQL (its ``DATABASE_URL`` becomes a fresh schema of the
  test server) with the keys its first block creates: ``API_KEYS`` holds the printed entries and
  ``TOKEN`` the printed admin key (the write key for the Python API server snippet).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import postgres_schema_url
from tests.e2e import readme_blocks
from tests.e2e.readme_blocks import (
    Block,
    background,
    block_env,
    on_store,
    run,
    wait_ready,
    wait_until,
)
from tests.e2e.server import free_port
from tests.e2e.test_readme import BLOCKS, claims, require_curl, require_node
from tests.protected_redis import ProtectedRedis, protected_redis

PILOT = "docs/migrating/featurevisor-pilot.md"
SELECTOR = "docs/migrating/bandit-selector.md"
PILOT_PORT = "localhost:5050"
PILOT_PASSWORD = "yourpassword"
DATAFILE = "production/datafile.json"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "featurevisor" / "datafiles"
PRINTED_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/recommender"
STEP3 = "Step 3: the experiment (algorithms, priors, control group, rules, thresholds)"
STEP4 = "Step 4: recommendations (which algorithm?)"
# What a server started by a block must not inherit from whoever runs the tests.
SERVER_SETTINGS = (
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_PASSWORD",
    "MONITOR_MAX_ARM_DOMINANCE",
    "MONITOR_MIN_RATE",
    "MONITOR_MIN_AVG_RATING",
    "TOKEN",
)


def guide(path: str, heading: str, index: int = 0) -> Block:
    block_id = f"{path} § {heading} #{index}"
    assert block_id in BLOCKS, f"no block {block_id}"
    return BLOCKS[block_id]


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in block_env(tmp).items() if k not in SERVER_SETTINGS}
    return {**env, **extra}


def at_server(block: Block, url: str) -> Block:
    """``block`` with Pilot's printed base URL (``localhost:5050``) replaced by ``url``."""
    assert PILOT_PORT in block.text, f"{block.id} no longer prints {PILOT_PORT}"
    text = block.text.replace(f"http://{PILOT_PORT}", url).replace(PILOT_PORT, url[7:])
    return Block(block.path, block.heading, block.index, block.language, text, block.line)


# ---------------------------------------------------------------------------------------------
# The old systems' blocks.

OLD_SYSTEM_BLOCKS = (
    f"{PILOT} § Installing (instead of the submodule) #0",
    f"{PILOT} § Configuring: the same .env #0",
    f"{PILOT} § Docker Compose #0",
    f"{PILOT} § The endpoints #0",
    f"{PILOT} § Watching the learning (instead of Redis keys) #0",
    f"{PILOT} § The SDK set-up #0",
    f"{SELECTOR} § Step 1: the database migration #0",
    f"{SELECTOR} § Step 2: starting the server #0",
    f"{SELECTOR} § {STEP4} #0",
    f"{SELECTOR} § {STEP4} #2",
    f"{SELECTOR} § Step 5: feedback #0",
    f"{SELECTOR} § Statistics and analytics #0",
    f"{SELECTOR} § Statistics and analytics #2",
    f"{SELECTOR} § Monitoring #0",
    f"{SELECTOR} § Troubleshooting #0",
)


@claims(*OLD_SYSTEM_BLOCKS)
def test_the_old_systems_blocks_are_text_only() -> None:
    """What Pilot and Bandit Selector did is shown, never run: each is a ``text`` block naming
    its system, and every other block of the two guides is abpilot's (claimed below)."""
    for block_id in OLD_SYSTEM_BLOCKS:
        b = BLOCKS[block_id]
        assert b.language == "text", f"{block_id} must be a text block (it is not abpilot's)"
        system = "FeatureVisor Pilot:" if b.path == PILOT else "Bandit Selector:"
        assert b.text.startswith(system), f"{block_id} must say whose it is"
        readme_blocks.EXERCISED.add(block_id)
    for b in BLOCKS.values():
        if b.path in (PILOT, SELECTOR) and b.id not in OLD_SYSTEM_BLOCKS:
            assert b.language != "text", f"{b.id}: an abpilot block must be runnable"


# ---------------------------------------------------------------------------------------------
# FeatureVisor Pilot.


def pilot_datafile() -> dict[str, Any]:
    """A v1 datafile with the features Pilot's requests name: checkout_button (control,
    variant_a) and header_color (blue, green), each for every user, split 50/50."""
    datafile = json.loads((FIXTURE / "v1-production.json").read_text())
    template = next(f for f in datafile["features"] if f["key"] == "checkoutButton")
    features = []
    for key, values in (
        ("checkout_button", ("control", "variant_a")),
        ("header_color", ("blue", "green")),
    ):
        feature = copy.deepcopy(template)
        feature["key"] = key
        feature["variations"] = [{"value": v, "weight": 50} for v in values]
        feature["traffic"] = [
            {
                "key": "everyone",
                "segments": "*",
                "percentage": 100000,
                "allocation": [
                    {"variation": values[0], "range": [0, 50000]},
                    {"variation": values[1], "range": [50000, 100000]},
                ],
            }
        ]
        features.append(feature)
    datafile["features"] = features
    return datafile


def pilot_build(tmp: Path) -> Path:
    target = tmp / "dist" / DATAFILE
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(pilot_datafile()))
    return tmp / "dist"


def pilot_env_file(tmp: Path, redis: ProtectedRedis, port: int, dist: Path) -> None:
    """The guide's .env as the server directory's .env, pointed at this machine."""
    env_block = guide(PILOT, "Configuring: the same .env", 1)
    readme_blocks.EXERCISED.add(env_block.id)
    text = env_block.text
    for printed, here in (
        ("REDIS_HOST=redis\n", "REDIS_HOST=127.0.0.1\n"),
        ("REDIS_PORT=6379\n", f"REDIS_PORT={redis.port}\n"),
        (f"REDIS_PASSWORD={PILOT_PASSWORD}\n", f"REDIS_PASSWORD={redis.password}\n"),
        ("PORT=5050\n", f"PORT={port}\n"),
        ("DATAFILES_DIR=/app/dist ", f"DATAFILES_DIR={dist} "),
    ):
        assert printed in text, f"the guide's .env no longer has {printed!r}"
        text = text.replace(printed, here)
    (tmp / ".env").write_text(text)


@pytest.fixture
def pilot_redis(tmp_path: Path) -> Iterator[ProtectedRedis]:
    with protected_redis(PILOT_PASSWORD, tmp_path) as server:
        yield server


def pilot_counts(url: str, feature: str) -> dict[str, tuple[int, int]]:
    stats = httpx.get(f"{url}/stats", params={"datafile": DATAFILE, "feature": feature}).json()
    (found,) = stats["features"]
    return {v["value"]: (v["exposures"], v["conversions"]) for v in found["variations"]}


@claims(
    f"{PILOT} § Configuring: the same .env #1",
    f"{PILOT} § Configuring: the same .env #2",
    f"{PILOT} § The endpoints #1",
    f"{PILOT} § Watching the learning (instead of Redis keys) #1",
)
def test_pilot_env_then_the_endpoints(tmp_path: Path, pilot_redis: ProtectedRedis) -> None:
    """Pilot's .env in the server's directory and `abpilot serve` as printed: Redis with the
    password, port from PORT; then Pilot's requests unchanged but for the host and port."""
    require_curl()
    port = free_port()
    pilot_env_file(tmp_path, pilot_redis, port, pilot_build(tmp_path))
    serve = guide(PILOT, "Configuring: the same .env", 2)
    with background(serve, cwd=tmp_path, env=env_for(tmp_path)) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, serve, tmp_path)
        log = readme_blocks.log_of(serve, tmp_path)
        assert (
            f"store: Redis at redis://:***@127.0.0.1:{pilot_redis.port}/0 "
            "(STORE and DATABASE_URL are not set and REDIS_HOST is)"
        ) in log
        assert PILOT_PASSWORD not in log

        calls = guide(PILOT, "The endpoints", 1)
        result = run(at_server(calls, url), cwd=tmp_path, env=env_for(tmp_path))
        assert readme_blocks.assert_output_comments(calls, result.stdout) == 4
        served = readme_blocks.json_documents(result.stdout)[0]
        assert [f["key"] for f in served["features"]] == ["checkout_button", "header_color"]
        assert pilot_counts(url, "checkout_button") == {"control": (0, 0), "variant_a": (1, 1)}
        assert pilot_counts(url, "header_color") == {"blue": (1, 1), "green": (0, 0)}

        watch = guide(PILOT, "Watching the learning (instead of Redis keys)", 1)
        watched = run(at_server(watch, url), cwd=tmp_path, env=env_for(tmp_path))
        assert readme_blocks.assert_output_comments(watch, watched.stdout) == 1
        metrics, analysis, history, _ = readme_blocks.json_documents(watched.stdout)
        exposed = {v["key"]: v["exposures"] for v in metrics["variants"]}
        assert exposed == {"control": 0, "variant_a": 1}
        assert [v["key"] for v in analysis["variants"]] == ["control", "variant_a"]
        assert history["weight_changes"] == []  # burn-in: below MIN_EXPOSURES_FOR_UPDATE

    # Everything was written to the password-protected Redis, under abpilot's prefix.
    client = pilot_redis.client()
    try:
        assert client.hlen("abp:index:keys") == 2  # one bandit per feature
        assert client.keys("stats:*") == []  # not Pilot's layout
    finally:
        client.close()


@claims(f"{PILOT} § Docker Compose #1")
def test_pilot_compose_environment(tmp_path: Path, pilot_redis: ProtectedRedis) -> None:
    """The compose file's abpilot environment, given to `abpilot serve` (no Docker here), talks
    to a Redis started with its redis service's --requirepass password."""
    b = guide(PILOT, "Docker Compose", 1)
    readme_blocks.EXERCISED.add(b.id)
    compose = yaml.safe_load(b.text)
    services = compose["services"]
    assert set(services) == {"redis", "abpilot"}
    command = services["redis"]["command"].split()
    assert command[command.index("--requirepass") + 1] == PILOT_PASSWORD
    assert "--appendonly" in command
    env = dict(line.split("=", 1) for line in services["abpilot"]["environment"])
    assert env["REDIS_PASSWORD"] == PILOT_PASSWORD
    assert not {"STORE", "DATABASE_URL"} & set(env)  # REDIS_HOST alone chooses Redis
    assert services["abpilot"]["ports"] == [f"{env['PORT']}:{env['PORT']}"]
    mount = next(v for v in services["abpilot"]["volumes"] if v.endswith(":ro"))
    assert mount.split(":")[1] == env["DATAFILES_DIR"]

    port = free_port()
    here = {
        **env,
        "REDIS_HOST": "127.0.0.1",  # the compose network's "redis"
        "REDIS_PORT": str(pilot_redis.port),
        "PORT": str(port),
        "DATAFILES_DIR": str(pilot_build(tmp_path)),  # the mounted ./dist
    }
    serve = Block(b.path, b.heading, b.index, "bash", "abpilot serve --host 127.0.0.1\n", b.line)
    with background(serve, cwd=tmp_path, env=env_for(tmp_path, **here)) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, serve, tmp_path)
        body = {"datafile": DATAFILE, "features": {"checkout_button": "variant_a"}}
        assert httpx.post(f"{url}/expose", json=body).json()["applied"] == 1
        assert httpx.get(f"{url}/datafile/{DATAFILE}").status_code == 200
    client = pilot_redis.client()
    try:
        assert client.hlen("abp:index:keys") == 2
    finally:
        client.close()


@claims(f"{PILOT} § The SDK set-up #1")
def test_pilot_sdk_setup_counts_an_exposure(tmp_path: Path) -> None:
    """The official @featurevisor/sdk 1.x on the served datafile: one exposure of the variation
    the SDK chose for user-123, posted with the datafile it loaded."""
    require_node()
    dist = pilot_build(tmp_path)
    env = {"STORE": "sql", "DATABASE_URL": "sqlite:///./abpilot.db", "DATAFILES_DIR": str(dist)}
    from tests.e2e.server import running_server

    with running_server(env, tmp_path) as url:
        b = at_server(guide(PILOT, "The SDK set-up", 1), url)
        project = readme_blocks.node_project(tmp_path, 1)
        with background(b, cwd=project, env=block_env(project)) as process:
            wait_until(
                lambda: sum(n for n, _ in pilot_counts(url, "checkout_button").values()) > 0,
                process,
                "an exposure counted by the service",
                lambda: readme_blocks.log_of(b, project),
            )
        readme_blocks.EXERCISED.add(guide(PILOT, "The SDK set-up", 1).id)
        counts = pilot_counts(url, "checkout_button")
    assert sorted(counts.values()) == [(0, 0), (1, 0)], counts


# ---------------------------------------------------------------------------------------------
# Bandit Selector.


def keys_from(stdout: str) -> dict[str, tuple[str, str]]:
    """role -> (key, API_KEYS entry) from the output of the keys block."""
    keys = re.findall(r"key: (abp_\S+)", stdout)
    entries = re.findall(r"API_KEYS entry: ((\w+):sha256:([0-9a-f]{64}))", stdout)
    assert len(keys) == len(entries) == 2, stdout
    found = {}
    for key, (entry, role, digest) in zip(keys, entries, strict=True):
        assert hashlib.sha256(key.encode()).hexdigest() == digest
        found[role] = (key, entry)
    return found


@pytest.mark.postgres
@claims(
    f"{SELECTOR} § Keys (the bearer token) #0",
    f"{SELECTOR} § Step 1: the database migration #1",
    f"{SELECTOR} § Step 2: starting the server #1",
    f"{SELECTOR} § {STEP3} #0",
    f"{SELECTOR} § {STEP4} #1",
    f"{SELECTOR} § {STEP4} #3",
    f"{SELECTOR} § Step 5: feedback #1",
    f"{SELECTOR} § Statistics and analytics #1",
    f"{SELECTOR} § Statistics and analytics #3",
    f"{SELECTOR} § Monitoring #1",
)
def test_bandit_selector_guide_in_order(tmp_path: Path) -> None:
    require_curl()
    keys = keys_from(run(guide(SELECTOR, "Keys (the bearer token)"), cwd=tmp_path).stdout)
    assert set(keys) == {"admin", "write"}
    admin, writer = keys["admin"][0], keys["write"][0]
    api_keys = ",".join(entry for _, entry in keys.values())

    with postgres_schema_url() as database:
        migrate = on_store(
            guide(SELECTOR, "Step 1: the database migration", 1), PRINTED_DATABASE_URL, database
        )
        migrated = run(migrate, cwd=tmp_path, env=env_for(tmp_path))
        assert "schema at revision" in migrated.stdout
        assert re.search(r"^\d{4}$", migrated.stdout.splitlines()[-1].strip()), migrated.stdout

        port = free_port()
        server = {"DATABASE_URL": database, "API_KEYS": api_keys, "PORT": str(port)}
        serve = guide(SELECTOR, "Step 2: starting the server", 1)
        with background(serve, cwd=tmp_path, env=env_for(tmp_path, **server)) as process:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process, serve, tmp_path)
            assert "workers: 4" in readme_blocks.log_of(serve, tmp_path)
            as_admin = env_for(tmp_path, TOKEN=admin, DATABASE_URL=database)
            as_writer = env_for(tmp_path, TOKEN=writer)

            create = guide(SELECTOR, STEP3)
            run(create, cwd=tmp_path, server=url, env=as_admin)
            recs = httpx.get(
                f"{url}/api/v1/experiments/recs", headers={"Authorization": f"Bearer {admin}"}
            ).json()
            assert (recs["status"], len(recs["variants"])) == ("running", 6)
            assert recs["settings"]["monitoring"]["min_avg_rating"] == 3.5

            decide = guide(SELECTOR, STEP4, 1)
            decided = run(decide, cwd=tmp_path, server=url, env=as_writer)
            assert readme_blocks.assert_output_comments(decide, decided.stdout) == 1
            backend = guide(SELECTOR, STEP4, 3)
            answers = run(backend, cwd=tmp_path, server=url, env=as_writer).stdout.splitlines()
            assert len(answers) == 2
            for line in answers:
                assert re.fullmatch(r"\{'algorithm': '\w+', 'group': '(bandit|control)'\}", line)
            latest_of_1 = httpx.get(
                f"{url}/api/v1/experiments/recs/bandit/stats",
                headers={"Authorization": f"Bearer {admin}"},
            ).json()["overall"]["decisions"]
            assert latest_of_1 == 3  # unit 1 twice, the session once

            feedback = guide(SELECTOR, "Step 5: feedback", 1)
            fed = run(feedback, cwd=tmp_path, server=url, env=as_writer)
            assert readme_blocks.assert_output_comments(feedback, fed.stdout) == 3
            decisions = {d["decision_id"] for d in readme_blocks.json_documents(fed.stdout)}
            assert len(decisions) == 1  # all on unit 1's latest decision

            stats_block = guide(SELECTOR, "Statistics and analytics", 1)
            stats = readme_blocks.json_documents(
                run(stats_block, cwd=tmp_path, server=url, env=as_admin).stdout
            )
            overall, per_day, week = stats
            assert (overall["overall"]["decisions"], overall["overall"]["successes"]) == (3, 1)
            assert [d["overall"]["decisions"] for d in per_day["days"]] == [3]
            assert week["overall"] == overall["overall"]

            table = run(guide(SELECTOR, "Statistics and analytics", 3), cwd=tmp_path, env=as_admin)
            header, *rows = table.stdout.splitlines()
            assert header.split() == [
                "group",
                "recs",
                "ctr%",
                "avg_rating",
                "thumbs_up",
                "thumbs_down",
            ]
            by_group = {row.split()[0]: row.split()[1:] for row in rows}
            assert sum(int(r[0]) for r in by_group.values()) == 3
            rated = [r for r in by_group.values() if r[2] != "nan"]
            assert [(r[2], r[3], r[4]) for r in rated] == [("4.50", "1", "0")]

            monitor = guide(SELECTOR, "Monitoring", 1)
            checked = run(monitor, cwd=tmp_path, server=url, env=as_admin)
            written = json.loads((tmp_path / "monitoring_report.json").read_text())
            (health,) = written["experiments"]
            names = [c["name"] for c in health["checks"]]
            assert names == ["arm_dominance", "min_rate", "min_avg_rating", "stale"]
            assert (written["days"], health["status"]) == (7, "ok")  # too few data to judge
            report = readme_blocks.json_documents(checked.stdout)[-1]
            assert report["days"] == 7
            assert [c["name"] for c in report["experiments"][0]["checks"]] == names


@claims(f"{SELECTOR} § {STEP3} #1")
def test_bandit_selector_configuration_in_python(tmp_path: Path) -> None:
    result = run(
        guide(SELECTOR, STEP3, 1),
        cwd=tmp_path,
    )
    assert result.stdout.strip() == "running"
    import abpilot

    service = abpilot.open(f"sqlite:///{tmp_path / 'recommender.db'}")
    try:
        recs = service.get_experiment("recs")
        assert [v.key for v in recs.variants] == [
            "svd",
            "embeddings",
            "graph",
            "item_cf",
            "long_tail",
            "serendipity",
        ]
        decision = service.contextual.decide(
            "recs", unit_id="1", context={"time_of_day": "night", "user_type": "new"}
        )
        rated = service.contextual.feedback("recs", unit_id="1", event="rating", value=4.4)
        assert (rated.decision_id, rated.outcome.value) == (
            decision.decision_id,
            "neutral",
        )  # 4.5 now
    finally:
        service.store.close()


def test_the_guides_are_in_the_registry() -> None:
    """docs/migrating/*.md is among the files whose every block must be claimed."""
    paths = {p.relative_to(readme_blocks.ROOT).as_posix() for p in readme_blocks.doc_files()}
    assert {PILOT, SELECTOR} <= paths
