"""Every code block of README.md and docs/**/*.md runs here (or, for docs/migrating/, in a test
module of its own that claims its blocks with :func:`claims`), as printed, against a real
service.

How:
- :mod:`tests.e2e.readme_blocks` finds every fenced block (```bash, ```python, ```js, ```json …)
  and names it ``<file> § <heading> #<n>``. Each test below claims the blocks it runs with
  ``@claims(...)``; :func:`test_every_block_is_claimed` fails when a block is claimed by no test
  (so no block can be added without a test) or a claim names a block that no longer exists, and
  a claiming test fails unless it actually ran or compared every block it claims.
- The only edit made to a block before it runs: its printed base URL (``localhost:8000``,
  ``http://localhost:8000``, ``https://abpilot.example.com``) becomes the test server's. The
  blocks that name a PostgreSQL or Redis server (Running on PostgreSQL / Redis, Export and import)
  get the test servers' URL instead, with a fresh schema (PostgreSQL) or key prefix (Redis, set in
  the environment as ``REDIS_PREFIX``). Everything else comes from outside the text: the working
  directory (the server's, so ``./abpilot.db`` is the server's database), the environment
  (``PORT`` for ``abpilot serve``, ``ABPILOT_API_KEY``) and ``$CURL_HOME/.curlrc``, which makes
  curl fail on any 4xx or 5xx. Bash blocks run under ``bash -euo pipefail``.
- Outputs printed as comments in bash blocks (``# {...}``) must be among the JSON documents the
  block really printed, in order: ``…`` stands for the rest of a string, more members of an
  object or more elements at the end of a list, and a number matches to the digits it shows.
  ``# e.g. {...}`` is an example: only its shape (keys and types) must agree. JSON blocks are
  compared with what the service really returns or accepts.
- Blocks run in the order the README presents them where one depends on another (the OFREP
  snippet and the Analysis commands read the state the curl walk-through left). Where a block
  shows a state no earlier block makes (the error example, the monitoring report's 450/50
  split), the test makes that state through the API first.
- JavaScript blocks run with node in a directory whose ``node_modules/@featurevisor/sdk`` links
  to the SDK major the block names (tests/featurevisor/node installs 1.x and 2.x side by side);
  without node or those packages they skip with the reason, and fail under ``CI=true``.

What is not run exactly as printed, and what is checked instead:
- Quick start and Tests: the ``pip install`` lines are not run (they would reinstall the package
  into the environment running the tests). Checked: the package and every requirement of the
  ``test`` extra are installed here, ``abpilot serve`` as printed (``PORT`` from the environment)
  serves ``/readyz``, ``/docs`` and ``/redoc`` on a fresh ``./abpilot.db``, and
  ``python -m pytest -n 2`` runs (on one test of this file, not the whole suite).
- Every other block runs whole, servers included (``abpilot serve --workers 4`` on PostgreSQL and
  Redis; ``DATAFILES_DIR=./dist abpilot serve``), stopped once its effect has been checked; so do
  the JavaScript set-ups, which would refresh forever.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from packaging.requirements import Requirement

from tests.conftest import REDIS_URL, postgres_schema_url, redis_prefix
from tests.e2e import readme_blocks
from tests.e2e.readme_blocks import (
    ROOT,
    Block,
    background,
    block_env,
    on_store,
    run,
    wait_ready,
    wait_until,
)
from tests.e2e.server import free_port, running_server

BLOCKS = readme_blocks.all_blocks()
README = (ROOT / "README.md").read_text()
FIXTURES = ROOT / "tests" / "fixtures" / "featurevisor" / "datafiles"
DATAFILE = "production/datafile-tag-all.json"
PRINTED_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/abpilot"
PRINTED_REDIS_URL = "redis://127.0.0.1:6379/0"

CLAIMED: dict[str, str] = {}  # block id -> the test that runs it
F = TypeVar("F", bound=Callable[..., None])


def claims(*ids: str) -> Callable[[F], F]:
    """Mark a test as the one that runs the blocks ``ids``; it fails if it did not."""

    def mark(test: F) -> F:
        for block_id in ids:
            assert block_id not in CLAIMED, f"{block_id} is claimed twice"
            CLAIMED[block_id] = test.__name__

        @functools.wraps(test)
        def checked(*args: Any, **kwargs: Any) -> None:
            readme_blocks.EXERCISED.clear()
            test(*args, **kwargs)
            missing = set(ids) - readme_blocks.EXERCISED
            assert not missing, f"{test.__name__} claims but never ran {sorted(missing)}"

        return checked  # type: ignore[return-value]

    return mark


def block(block_id: str) -> Block:
    assert block_id in BLOCKS, f"no block {block_id}; the blocks are {sorted(BLOCKS)}"
    return BLOCKS[block_id]


def readme(heading: str, index: int = 0) -> Block:
    return block(f"README.md § {heading} #{index}")


def compared(b: Block) -> Any:
    """A JSON block's value, marked as exercised by the caller's comparison."""
    readme_blocks.EXERCISED.add(b.id)
    return json.loads(b.text)


@dataclass(frozen=True)
class Site:
    """A running `abpilot serve` and its working directory (``./abpilot.db`` is its database)."""

    url: str
    dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return block_env(self.dir, **extra)

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


SQLITE_HERE = {"STORE": "sql", "DATABASE_URL": "sqlite:///./abpilot.db"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A fresh server of one's own."""
    with running_server(SQLITE_HERE, tmp_path) as url:
        yield Site(url, tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server for the blocks that touch experiments no other block does (each test uses
    its own keys, so they pass in any order or split)."""
    directory = tmp_path_factory.mktemp("readme-shared")
    with running_server(SQLITE_HERE, directory) as url:
        yield Site(url, directory)


def require_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")


def require_node() -> None:
    from tests.featurevisor.node_sdk import require_node as require

    require()


# ---------------------------------------------------------------------------------------------
# The registry itself.


def claiming_modules() -> list[str]:
    """Every test module of tests/e2e: the docs' blocks may be claimed in any of them (the
    migration guides of docs/migrating/ have their own files)."""
    here = Path(__file__).parent
    return sorted(f"tests.e2e.{p.stem}" for p in here.glob("test_*.py"))


def test_every_block_is_claimed() -> None:
    import importlib

    for module in claiming_modules():  # each module's claims register when it is imported
        importlib.import_module(module)
    unclaimed = [
        f"{b.id} (line {b.line}, {b.language or 'no language'}): {b.text.splitlines()[0]!r}"
        for b in BLOCKS.values()
        if b.id not in CLAIMED
    ]
    assert not unclaimed, "code blocks no test runs:\n" + "\n".join(unclaimed)
    stale = sorted(set(CLAIMED) - set(BLOCKS))
    assert not stale, f"claims of blocks that do not exist (renamed or moved?): {stale}"


def test_the_registry_sees_every_fence() -> None:
    for path in readme_blocks.doc_files():
        fences = sum(1 for line in path.read_text().splitlines() if re.match(r"(```|~~~)", line))
        found = [b for b in BLOCKS.values() if b.path == path.relative_to(ROOT).as_posix()]
        assert fences == 2 * len(found), f"{path.name}: {fences} fences, {len(found)} blocks"


@claims("docs/architecture.md § 1. Layers #0")
def test_the_architecture_tree_names_what_exists() -> None:
    """The layer tree of docs/architecture.md lists every package of src/abpilot (and the client
    module), each of which exists: the doc cannot drift from the code unnoticed."""
    tree = block("docs/architecture.md § 1. Layers #0")
    readme_blocks.EXERCISED.add(tree.id)
    assert tree.language == "text"
    named = set(re.findall(r"[├└]── (\S+)", tree.text))
    src = ROOT / "src" / "abpilot"
    for name in named:
        assert (src / name.rstrip("/")).exists(), f"the tree names {name}, not in src/abpilot"
    packages = {p.name + "/" for p in src.iterdir() if (p / "__init__.py").exists()}
    assert packages <= named, f"packages missing from the tree: {sorted(packages - named)}"
    assert "client.py" in named


# ---------------------------------------------------------------------------------------------
# Quick start and Tests: what can be checked without reinstalling.


@claims("README.md § Quick start #0", "README.md § Tests #0")
def test_quick_start_and_test_commands(tmp_path: Path) -> None:
    quick, tests = readme("Quick start"), readme("Tests")
    readme_blocks.EXERCISED.update({quick.id, tests.id})
    lines = [line.split("#")[0].strip() for line in quick.text.splitlines()]
    assert lines == [
        "pip install -e . && abpilot serve",
        'pip install -e ".[test]" && python -m pytest -n 2',
    ]
    assert tests.text == 'pip install -e ".[test]"\npython -m pytest -n 2\n'

    # `pip install -e ".[test]"`: this environment has the package and all of the extra.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert importlib.metadata.version("abpilot") == project["version"]
    for spec in project["optional-dependencies"]["test"]:
        requirement = Requirement(spec)
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (spec, installed)

    # `abpilot serve`, as printed, in a fresh directory: SQLite in ./abpilot.db, docs at /docs.
    serve = Block(quick.path, quick.heading, 0, "bash", "abpilot serve\n", quick.line)
    port = free_port()
    with background(serve, cwd=tmp_path, env=block_env(tmp_path, PORT=str(port))) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, serve, tmp_path)
        for page in ("/docs", "/redoc"):
            assert httpx.get(f"{url}{page}").status_code == 200
    assert (tmp_path / "abpilot.db").is_file()

    # `python -m pytest -n 2` (on this file's registry test, not the whole suite).
    registry_test = f"{Path(__file__).relative_to(ROOT)}::test_every_block_is_claimed"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider", registry_test],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


# ---------------------------------------------------------------------------------------------
# The curl walk-through, its error shape, the Python API.


def walk_through(site: Site) -> None:
    b = readme("Walk-through with curl")
    result = run(b, cwd=site.dir, server=site.url, env=site.env())
    assert readme_blocks.assert_output_comments(b, result.stdout) == 2


@claims(
    "README.md § Walk-through with curl #0",
    "README.md § Analysis #0",
    "README.md § OpenFeature (OFREP) #0",
)
def test_walk_through_then_analysis_and_ofrep(site: Site) -> None:
    """In the README's order on one server: the curl walk-through, the Analysis commands on the
    experiment it left, and the OFREP snippet whose printed output is that state's."""
    require_curl()
    walk_through(site)
    final = site.get("/api/v1/experiments/checkout-button")
    assert (final["status"], final["winner"]) == ("completed", "green")
    metrics = site.get("/api/v1/experiments/checkout-button/metrics")
    assert sum(v["unique_units"] for v in metrics["variants"]) == 2
    revenue = sum(v["metrics"]["revenue"]["sum"] for v in metrics["variants"])
    assert revenue == 42.5

    analysis = run(readme("Analysis"), cwd=site.dir, server=site.url, env=site.env())
    documents = readme_blocks.json_documents(analysis.stdout)
    assert [(d["metric"], d["correction"], d["sequential"]) for d in documents[:3]] == [
        ("conversion", "holm", False),
        ("revenue", "bh", False),
        ("conversion", "holm", True),
    ]
    # `abpilot analyze` read the server's ./abpilot.db; `abpilot sample-size` planned 3 arms.
    tables = analysis.stdout[analysis.stdout.rindex("}") + 1 :]
    assert "checkout-button: conversion" in tables
    assert "insufficient_data: too few units" in tables
    assert re.search(r"\d+ units per variant, \d+ in all", tables)

    ofrep = run(readme("OpenFeature (OFREP)"), cwd=site.dir, server=site.url, env=site.env())
    # The printed comment: the walk-through completed checkout-button with green as winner.
    assert ofrep.stdout.splitlines()[-1] == "green green STATIC"


@claims("README.md § Walk-through with curl #1")
def test_the_printed_error_is_the_service_s(shared: Site) -> None:
    """The README's error example is exactly what the service answers to a conversion of a
    unit it never saw, on the walk-through's experiment while it runs."""
    api = f"{shared.url}/api/v1/experiments"
    created = httpx.post(
        api,
        json={
            "key": "checkout-button",
            "variants": [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}],
            "metrics": [{"key": "conversion"}],
        },
    )
    assert created.status_code == 201, created.text
    httpx.put(f"{api}/checkout-button/status", json={"status": "running"}).raise_for_status()
    refused = httpx.post(
        f"{api}/checkout-button/conversions", json={"unit_id": "stranger", "metric": "conversion"}
    )
    assert refused.status_code == 404
    assert refused.json() == compared(readme("Walk-through with curl", 1))


@claims("README.md § Python API #0")
def test_python_walk_through(tmp_path: Path) -> None:
    result = run(readme("Python API"), cwd=tmp_path)
    assert "42.5" in result.stdout
    assert (tmp_path / "abpilot.db").is_file()  # the printed relative URL, in its directory


@claims("README.md § Guardrails and the decision #0")
def test_guardrails_and_the_decision(tmp_path: Path) -> None:
    """The printed decision and the winner that completing without one stores."""
    block = readme("Guardrails and the decision")
    result = run(block, cwd=tmp_path)
    printed = [line[2:] for line in block.text.splitlines() if line.startswith("# ")]
    assert (
        result.stdout.splitlines()
        == printed
        == [
            "ship green primary_winner, guardrails_safe",
            "green",
        ]
    )


# ---------------------------------------------------------------------------------------------
# Bandits, interleaving, contextual bandits.


@claims("README.md § Bandits #0")
def test_bandit_walk_through(shared: Site) -> None:
    require_curl()
    b = readme("Bandits")
    result = run(b, cwd=shared.dir, server=shared.url, env=shared.env())
    assert readme_blocks.assert_output_comments(b, result.stdout) == 2
    base = "/api/v1/experiments/hero-banner"
    split = {
        a["variant_name"]: a["allocation_percentage"]
        for a in shared.get(f"{base}/allocation")["allocations"]
    }
    assert split == {"control": 0.67, "variant_a": 91.92, "variant_b": 7.41}  # as the README says
    history = shared.get(f"{base}/history")
    assert [c["period"] for c in history["weight_changes"]] == [1]
    assert history["weight_changes"][0]["weights"]["variant_a"] == 0.9192
    assert len(history["daily_metrics"]) == 3


@claims("README.md § Bandits #1")
def test_simulate_command(tmp_path: Path) -> None:
    """The simulation as printed (about a minute): its regret is the Performance table's."""
    result = run(readme("Bandits", 1), cwd=tmp_path, timeout=900)
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
    regret = re.search(r"final cumulative regret\D+([\d.]+)\D+([\d.]+)", result.stdout)
    assert regret, result.stdout
    row = re.search(r"\| 3 arms \.032/\.042/\.038 \| 100,000 \| ([\d.]+) ± ([\d.]+) \|", README)
    assert row, "the Performance table has no row for this simulation"
    assert regret.groups() == row.groups()


@claims("README.md § Interleaving #0", "README.md § Interleaving #1")
def test_interleaving_walk_through(shared: Site) -> None:
    require_curl()
    b = readme("Interleaving")
    result = run(b, cwd=shared.dir, server=shared.url, env=shared.env())
    assert readme_blocks.assert_output_comments(b, result.stdout) == 2
    analysis = shared.get("/api/v1/experiments/search/analysis")
    assert (analysis["impressions"], analysis["wins_a"] + analysis["wins_b"]) == (1, 1)
    # The Python example, in the server's directory: the same ./abpilot.db.
    done = run(readme("Interleaving", 1), cwd=shared.dir)
    assert "InterleavingAnalysis(impressions=1" in done.stdout
    assert shared.get("/api/v1/experiments/ranker-test")["status"] == "running"


@claims("README.md § Contextual bandits #0")
def test_contextual_walk_through(shared: Site) -> None:
    require_curl()
    b = readme("Contextual bandits")
    result = run(b, cwd=shared.dir, server=shared.url, env=shared.env())
    assert readme_blocks.assert_output_comments(b, result.stdout) == 2
    stats = shared.get("/api/v1/experiments/recs/bandit/stats")
    assert stats["overall"] == {**stats["overall"], "decisions": 1, "successes": 1}


# ---------------------------------------------------------------------------------------------
# The HTTP client (the OFREP snippet runs after the walk-through, and with a key below).


@claims("README.md § HTTP client #0")
def test_http_client_snippet(shared: Site) -> None:
    result = run(readme("HTTP client"), cwd=shared.dir, server=shared.url, env=shared.env())
    variant, refusal, reason = result.stdout.splitlines()
    assert variant in {"control", "short"}
    assert refusal.startswith("invalid_transition status ")
    assert reason == "insufficient_data"
    experiment = shared.get("/api/v1/experiments/signup-copy")
    assert experiment["status"] == "running"
    metrics = shared.get("/api/v1/experiments/signup-copy/metrics")
    assert sum(v["unique_units"] for v in metrics["variants"]) == 1


# ---------------------------------------------------------------------------------------------
# FeatureVisor companion: the server as printed, curl, the official SDKs.


def dist(tmp: Path, schema: int) -> Path:
    """A FeatureVisor build directory holding the sample datafile of ``schema`` at DATAFILE."""
    target = tmp / "dist" / DATAFILE
    target.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / f"v{schema}-production.json", target)
    return tmp / "dist"


def exposures(url: str) -> dict[str, tuple[int, int]]:
    stats = httpx.get(f"{url}/stats", params={"datafile": DATAFILE, "feature": "checkoutButton"})
    (feature,) = stats.json()["features"]
    return {v["value"]: (v["exposures"], v["conversions"]) for v in feature["variations"]}


def run_sdk_block(
    b: Block, tmp: Path, url: str, sdk_major: int | None, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run a FeatureVisor set-up against ``url`` until an exposure beyond ``before`` is counted
    (a JavaScript one refreshes forever: it is stopped then)."""
    total = sum(n for n, _ in (before or {}).values())
    if sdk_major is None:
        result = run(b, cwd=tmp, server=url)
        return {"stdout": result.stdout, "exposures": exposures(url)}
    project = readme_blocks.node_project(tmp, sdk_major)
    with background(b, cwd=project, env=block_env(project), server=url) as process:
        wait_until(
            lambda: sum(n for n, _ in exposures(url).values()) > total,
            process,
            "an exposure counted by the service",
            lambda: readme_blocks.log_of(b, project),
        )
        log = readme_blocks.log_of(b, project)
    return {"stdout": log, "exposures": exposures(url)}


def sdk_variation(url: str, user: str) -> str:
    """What the Python SDK gives ``user`` on the served (v2) datafile."""
    import featurevisor

    served = httpx.get(f"{url}/datafile/{DATAFILE}").json()
    sdk = featurevisor.create_featurevisor({"datafile": served, "logLevel": "fatal"})
    variation = sdk.get_variation("checkoutButton", {"userId": user})
    assert isinstance(variation, str)
    return variation


@claims("README.md § FeatureVisor companion #2")
def test_featurevisor_sdk1_snippet_counts_an_exposure(tmp_path: Path) -> None:
    require_node()
    with running_server({**SQLITE_HERE, "DATAFILES_DIR": str(dist(tmp_path, 1))}, tmp_path) as url:
        ran = run_sdk_block(readme("FeatureVisor companion", 2), tmp_path, url, 1)
        counted = ran["exposures"]
    assert sorted(counted.values()) == [(0, 0), (1, 0)], ran


@claims(
    "README.md § FeatureVisor companion #0",
    "README.md § FeatureVisor companion #1",
    "README.md § FeatureVisor companion #3",
    "README.md § FeatureVisor companion #4",
)
def test_featurevisor_companion_in_readme_order(tmp_path: Path) -> None:
    """The server as printed (a v2 build in ./dist), the curl calls, then the Python SDK and the
    JavaScript SDK 2.x set-ups: each must get exactly one exposure counted, for the variation
    the SDK gives user-123."""
    require_curl()
    dist(tmp_path, 2)
    serve, calls = readme("FeatureVisor companion"), readme("FeatureVisor companion", 1)
    port = free_port()
    with background(serve, cwd=tmp_path, env=block_env(tmp_path, PORT=str(port))) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, serve, tmp_path)
        result = run(calls, cwd=tmp_path, server=url, env=block_env(tmp_path))
        assert exposures(url) == {"control": (0, 0), "treatment": (1, 1)}
        assert '"status":"unchanged"' in result.stdout  # burn-in: too few exposures to move
        datafile = httpx.get(f"{url}/datafile/{DATAFILE}").json()
        assert datafile == json.loads((FIXTURES / "v2-production.json").read_text())
        expected = sdk_variation(url, "user-123")

        before = exposures(url)
        ran = run_sdk_block(readme("FeatureVisor companion", 4), tmp_path, url, None)
        assert ran["exposures"] == one_more(before, expected), ran

        require_node()
        before = exposures(url)
        ran = run_sdk_block(readme("FeatureVisor companion", 3), tmp_path, url, 2, before)
        assert ran["exposures"] == one_more(before, expected), ran


def one_more(counts: dict[str, tuple[int, int]], variation: str) -> dict[str, tuple[int, int]]:
    exposed, converted = counts[variation]
    return {**counts, variation: (exposed + 1, converted)}


# ---------------------------------------------------------------------------------------------
# API keys.


@claims("README.md § API keys and roles #0", "README.md § API keys and roles #1")
def test_api_keys_then_the_snippets_with_a_key(tmp_path: Path) -> None:
    """A key made by `abpilot keys create`, its hashed entry in API_KEYS (with an admin key):
    the curl line, the HTTP client and the OFREP snippet work with a key in ABPILOT_API_KEY; the
    curl line is refused with a wrong key, and OFREP gets no flag without one."""
    require_curl()
    created = run(readme("API keys and roles"), cwd=tmp_path)
    key_line, entry_line = created.stdout.splitlines()
    key = re.fullmatch(r"key: (abp_\S+)", key_line)
    entry = re.fullmatch(r"API_KEYS entry: (write:sha256:[0-9a-f]{64})", entry_line)
    assert key, created.stdout
    assert entry, created.stdout
    keys = f"{entry[1]},admin:readme-admin-key"
    with running_server({**SQLITE_HERE, "API_KEYS": keys}, tmp_path) as url:
        site = Site(url, tmp_path)
        writer, admin = (
            site.env(ABPILOT_API_KEY=key[1]),
            site.env(ABPILOT_API_KEY="readme-admin-key"),
        )
        listing = readme("API keys and roles", 1)
        assert run(listing, cwd=tmp_path, server=url, env=writer).stdout.startswith("[")
        # With another key the same command is refused (curl fails on the 401).
        wrong = site.env(ABPILOT_API_KEY="abp_not-a-key")
        refused = run(listing, cwd=tmp_path, server=url, env=wrong, expect_returncode=22)
        assert "401" in refused.stderr

        # The HTTP client creates and starts an experiment: the admin key.
        client = run(readme("HTTP client"), cwd=tmp_path, server=url, env=admin)
        assert client.stdout.splitlines()[-1] == "insufficient_data"
        # The walk-through's end state, then OFREP with the write key, and without a key.
        headers = {"Authorization": "Bearer readme-admin-key"}
        api = f"{url}/api/v1/experiments"
        variants = [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}]
        body = {"key": "checkout-button", "variants": variants}
        httpx.post(api, json=body, headers=headers).raise_for_status()
        for status in (
            {"status": "running"},
            {"status": "completed", "winner": "green", "override": True},
        ):
            done = httpx.put(f"{api}/checkout-button/status", json=status, headers=headers)
            done.raise_for_status()
        ofrep = readme("OpenFeature (OFREP)")
        keyed = run(ofrep, cwd=tmp_path, server=url, env=writer)
        assert keyed.stdout.splitlines()[-1] == "green green STATIC"
        anonymous = run(ofrep, cwd=tmp_path, server=url, env=site.env())
        assert anonymous.stdout.splitlines()[-1] == "control None ERROR"


# ---------------------------------------------------------------------------------------------
# Monitoring.


@claims("README.md § Monitoring #0")
def test_monitoring_settings_are_accepted(shared: Site) -> None:
    settings = compared(readme("Monitoring"))
    response = httpx.post(
        f"{shared.url}/api/v1/experiments",
        json={
            "key": "guarded",
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
            "metrics": [
                {"key": "conversion"},
                {"key": "revenue", "kind": "value"},
                {"key": "errors"},
            ],
            "settings": settings,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["settings"]["monitoring"] == settings["monitoring"]


@claims("README.md § Monitoring #1", "README.md § Monitoring #2")
def test_monitoring_commands_on_the_printed_state(site: Site) -> None:
    """The state the printed report shows: `checkout` with units split 450/50, one healthy."""
    require_curl()
    api = f"{site.url}/api/v1/experiments"
    variants = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    for key in ("checkout", "healthy"):
        httpx.post(api, json={"key": key, "variants": variants}).raise_for_status()
        httpx.put(f"{api}/{key}/status", json={"status": "running"}).raise_for_status()
    events = [
        {"type": "exposure", "experiment_id": "checkout", "unit_id": f"u{i}", "variant": variant}
        for i, variant in enumerate(["a"] * 450 + ["b"] * 50)
    ]
    httpx.post(f"{site.url}/api/v1/events", json={"events": events}).raise_for_status()

    b = readme("Monitoring", 1)
    # `abpilot monitor` exits 1 when any experiment is in alert, as the comment says.
    result = run(b, cwd=site.dir, server=site.url, env=site.env(), expect_returncode=1)
    assert readme_blocks.assert_output_comments(b, result.stdout) == 1
    written = json.loads((site.dir / "report.json").read_text())
    assert [(e["key"], e["status"]) for e in written["experiments"]] == [
        ("checkout", "alert"),
        ("healthy", "ok"),
    ]
    printed = run(readme("Monitoring", 2), cwd=site.dir)
    assert printed.stdout.startswith("checkout alert ['Sample ratio mismatch: units split 450/50")


# ---------------------------------------------------------------------------------------------
# PostgreSQL, Redis, export and import.


@pytest.mark.postgres
@claims("README.md § Running on PostgreSQL #0")
def test_running_on_postgresql(tmp_path: Path) -> None:
    with postgres_schema_url() as url:
        b = on_store(readme("Running on PostgreSQL"), PRINTED_POSTGRES_URL, url)
        check_served_store(b, tmp_path, block_env(tmp_path), "store: sql, workers: 4")


@pytest.mark.redis
@claims("README.md § Running on Redis #0")
def test_running_on_redis(tmp_path: Path) -> None:
    with redis_prefix() as prefix:
        b = on_store(readme("Running on Redis"), PRINTED_REDIS_URL, REDIS_URL)
        env = block_env(tmp_path, REDIS_PREFIX=prefix)
        check_served_store(b, tmp_path, env, "store: redis, workers: 4")


def check_served_store(b: Block, tmp: Path, env: dict[str, str], banner: str) -> None:
    """Run a server block (``PORT`` from the environment) and use it: create, start, assign."""
    port = free_port()
    with background(b, cwd=tmp, env={**env, "PORT": str(port)}) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, b, tmp)
        api = f"{url}/api/v1/experiments"
        variants = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
        httpx.post(api, json={"key": "pg-or-redis", "variants": variants}).raise_for_status()
        httpx.put(f"{api}/pg-or-redis/status", json={"status": "running"}).raise_for_status()
        for _ in range(8):  # several requests, so several workers answer
            assigned = httpx.post(f"{api}/pg-or-redis/assign", json={"unit_id": "u1"})
            assert assigned.json()["variant"]["key"] in {"a", "b"}
        assert banner in readme_blocks.log_of(b, tmp)


@pytest.mark.postgres
@claims("README.md § Export and import (moving between stores) #0")
def test_export_and_import_commands(site: Site) -> None:
    require_curl()
    walk_through(site)
    with postgres_schema_url() as url:
        b = on_store(readme("Export and import (moving between stores)"), PRINTED_POSTGRES_URL, url)
        run(b, cwd=site.dir, env=site.env())
        import abpilot

        target = abpilot.open(url)
        try:
            metrics = target.get_metrics("checkout-button")
            assert sum(v.unique_units for v in metrics.variants) == 2
            assert target.get_experiment("checkout-button").winner == "green"
        finally:
            target.store.close()
