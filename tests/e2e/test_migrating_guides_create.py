"""The migration guides for SONA, OpenInsight and the Multi-Armed Bandit Optimization API
(docs/migrating/sona.md, openinsight.md, mab-optimization-api.md): every abpilot block runs here,
as printed, against a real `abpilot serve` (or in-process, for the Python API).

The claims mechanism is test_readme.py's (see its docstring and tests/e2e/readme_blocks.py): each
test claims the blocks it runs, the registry test fails on a block no test claims, and a block is
changed before it runs only where its printed base URL (``http://localhost:8000``) or store URL
(PostgreSQL, Redis) becomes the test's own. Here the Redis example's printed ``prefix`` is part of
its store URL, so it becomes the test's own key prefix too.

The rule for other systems' code: a guide shows SONA's or the MAB API's own request next to
abpilot's in a ``text`` block whose first line names the system, "SONA (not abpilot):" (the rule
the other guides of docs/migrating/ follow too). Those blocks are another system's and are never
run: :func:`test_the_other_systems_blocks_are_text_only` claims them after checking that. Every
other block of a guide is abpilot's and is claimed by a test that runs it. Outputs printed as
comments (``# {…}``) must be what the block really printed, in order; ``# e.g. {…}`` checks the
shape only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import REDIS_URL, postgres_schema_url, redis_prefix
from tests.e2e import readme_blocks
from tests.e2e.readme_blocks import (
    Block,
    background,
    block_env,
    on_store,
    run,
    wait_ready,
)
from tests.e2e.server import free_port, running_server
from tests.e2e.test_readme import (
    BLOCKS,
    PRINTED_POSTGRES_URL,
    PRINTED_REDIS_URL,
    SQLITE_HERE,
    Site,
    claims,
    compared,
    require_curl,
)

SONA, OPENINSIGHT, MAB = (
    "docs/migrating/sona.md",
    "docs/migrating/openinsight.md",
    "docs/migrating/mab-optimization-api.md",
)


SYSTEMS = {SONA: "SONA", OPENINSIGHT: "OpenInsight", MAB: "MAB API"}
OTHER_SYSTEMS_BLOCKS = [
    f"{SONA} § 1. Database #0",
    f"{SONA} § 4. Assignment with exposure (SONA's recommendations) #0",
    f"{MAB} § 1. Create an experiment #0",
]


def guide(path: str, heading: str, index: int = 0) -> Block:
    block_id = f"{path} § {heading} #{index}"
    assert block_id in BLOCKS, f"no block {block_id}; the guide's blocks are " + ", ".join(
        sorted(b for b in BLOCKS if b.startswith(path))
    )
    found = BLOCKS[block_id]
    assert found.language != "text", f"{block_id} is another system's block"
    return found


def ran(b: Block, site: Site, comments: int | None = None) -> str:
    """Run a bash block against ``site``; check the outputs it prints as comments."""
    result = run(b, cwd=site.dir, server=site.url, env=site.env())
    checked = readme_blocks.assert_output_comments(b, result.stdout)
    if comments is not None:
        assert checked == comments, f"{b.id}: {checked} printed outputs, expected {comments}"
    return result.stdout


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with running_server(SQLITE_HERE, tmp_path) as url:
        yield Site(url, tmp_path)


@claims(*OTHER_SYSTEMS_BLOCKS)
def test_the_other_systems_blocks_are_text_only() -> None:
    """SONA's and the MAB API's requests are shown, never run: each is a ``text`` block that
    says whose it is, and every block of a guide that is not one is abpilot's (and runnable)."""
    for block_id in OTHER_SYSTEMS_BLOCKS:
        b = BLOCKS[block_id]
        readme_blocks.EXERCISED.add(block_id)
        assert b.language == "text", f"{block_id} must be a text block (it is not abpilot's)"
        assert b.text.startswith(f"{SYSTEMS[b.path]} (not abpilot):\n"), block_id
    for path in SYSTEMS:
        for b in (b for b in BLOCKS.values() if b.path == path):
            if b.id not in OTHER_SYSTEMS_BLOCKS:
                assert b.language in {"bash", "python", "json", "env"}, b.id
                assert "8082" not in b.text, f"{b.id} calls SONA's port"


# ---- SONA --------------------------------------------------------------------------------------


@claims(
    f"{SONA} § 2. Create an experiment #0",
    f"{SONA} § 3. Start the experiment #0",
    f"{SONA} § 4. Assignment with exposure (SONA's recommendations) #1",
    f"{SONA} § 5. Record conversions #0",
    f"{SONA} § 5. Record conversions #1",
    f"{SONA} § 6. Analyze results #0",
    f"{SONA} § Example 1: recommendation algorithms #0",
    f"{SONA} § Example 2: LoRA boost factor #0",
    f"{SONA} § Example 3: analyze results #0",
    f"{SONA} § Integration with recommendations #0",
    f"{SONA} § Consistent hashing #0",
    f"{SONA} § Testing, metrics and troubleshooting #0",
)
def test_sona_guide_in_order(site: Site) -> None:
    require_curl()
    ran(guide(SONA, "2. Create an experiment"), site, comments=1)
    ran(guide(SONA, "3. Start the experiment"), site)
    ran(guide(SONA, "4. Assignment with exposure (SONA's recommendations)", 1), site, comments=1)
    ran(guide(SONA, "5. Record conversions"), site, comments=1)
    experiment = site.get("/api/v1/experiments/lora_boost_test")
    assert experiment["status"] == "running"
    assert [m["key"] for m in experiment["metrics"]] == ["conversion", "watch_completion"]
    ran(guide(SONA, "5. Record conversions", 1), site, comments=1)
    ran(guide(SONA, "6. Analyze results"), site, comments=2)

    ran(guide(SONA, "Example 1: recommendation algorithms"), site)
    example_1 = site.get("/api/v1/experiments/recommendation_algo_v2")
    assert example_1["status"] == "running"
    assert [v["config"] for v in example_1["variants"]] == [
        {"algorithm": "collaborative_v1"},
        {"algorithm": "collaborative_v2"},
    ]
    ran(guide(SONA, "Example 2: LoRA boost factor"), site, comments=1)
    example_2 = site.get("/api/v1/experiments/lora_boost_optimization")
    assert [v["weight"] for v in example_2["variants"]] == [0.33, 0.34, 0.33]
    assert example_2["traffic_allocation"] == 0.8

    printed = run(guide(SONA, "Example 3: analyze results"), cwd=site.dir, server=site.url)
    assert printed.stdout.splitlines() == [
        "Variant: control",
        "  Conversion rate: 100.00%",
        "  Total conversions: 1",
        "  Exposures: 1",
        "Variant: treatment",
    ]
    integrated = run(guide(SONA, "Integration with recommendations"), cwd=site.dir, server=site.url)
    assert integrated.stdout.strip() == "lora_boost_test:control 0.3"
    hashed = run(guide(SONA, "Consistent hashing"), cwd=site.dir, server=site.url)
    assert hashed.stdout.strip() in {"baseline", "new_algo"}
    counted = {
        v["key"]: (v["assigned_units"], v["exposures"])
        for v in site.get("/api/v1/experiments/lora_boost_test/metrics")["variants"]
    }
    assert counted == {"control": (2, 2), "treatment": (0, 0)}  # user-2 and user-3, exposed

    uneven = {
        **{k: example_2[k] for k in ("name", "traffic_allocation")},
        "key": "uneven",
        "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.6}],
    }
    refused = httpx.post(f"{site.url}/api/v1/experiments", json=uneven)
    assert refused.status_code == 422
    printed_error = compared(guide(SONA, "Testing, metrics and troubleshooting"))
    assert refused.json() == printed_error


@pytest.mark.postgres
@claims(f"{SONA} § 1. Database #1")
def test_sona_guide_database_set_up(tmp_path: Path) -> None:
    with postgres_schema_url() as url:
        b = on_store(guide(SONA, "1. Database", 1), PRINTED_POSTGRES_URL, url)
        run(b, cwd=tmp_path)
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            tables = set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    assert {"experiments", "variants", "assignments", "alembic_version"} <= tables


# ---- OpenInsight -------------------------------------------------------------------------------


@claims(
    f"{OPENINSIGHT} § Creating an experiment #0",
    f"{OPENINSIGHT} § Assigning variants to users #0",
    f"{OPENINSIGHT} § Recording conversions #0",
    f"{OPENINSIGHT} § Analyzing results #0",
    f"{OPENINSIGHT} § Ending an experiment #0",
    f"{OPENINSIGHT} § Using SQL database persistence #0",
)
def test_openinsight_python_guide_in_order(tmp_path: Path) -> None:
    """The Python examples one after the other in one directory (``sqlite:///abpilot.db``)."""
    created = run(guide(OPENINSIGHT, "Creating an experiment"), cwd=tmp_path).stdout
    assert created.strip() == (
        "homepage-button-color-test [('blue-button', 0.5), ('green-button', 0.5)]"
    )
    assigned = run(guide(OPENINSIGHT, "Assigning variants to users"), cwd=tmp_path).stdout
    assert assigned.strip() in {"green", "blue"}
    recorded = run(guide(OPENINSIGHT, "Recording conversions"), cwd=tmp_path).stdout
    assert recorded.strip() == "[('conversion', 'binary'), ('revenue', 'value')]"

    import abpilot

    service = abpilot.open(f"sqlite:///{tmp_path / 'abpilot.db'}")
    try:
        variants = service.get_metrics("homepage-button-color-test").variants
        conversion = {v.key: v.metrics["conversion"] for v in variants}
        revenue = {v.key: v.metrics["revenue"] for v in variants}
        mine = "green-button" if assigned.strip() == "green" else "blue-button"
        # The by-variant conversion counts as an event with its value; the by-user one once.
        assert (conversion[mine].count, conversion[mine].sum) == (1, 49.9)
        assert (revenue[mine].units, revenue[mine].sum) == (1, 49.9)
        analysed = service.analyze_experiment("homepage-button-color-test")
        assert sum(v.conversions for v in analysed.variants) == 1
    finally:
        service.store.close()

    analysis = run(guide(OPENINSIGHT, "Analyzing results"), cwd=tmp_path).stdout.splitlines()
    assert analysis[0] == "No statistically significant winner yet."
    assert analysis[1].startswith("insufficient_data - too few units")
    ended = run(guide(OPENINSIGHT, "Ending an experiment"), cwd=tmp_path).stdout
    assert ended.strip() == "completed"
    persisted = run(guide(OPENINSIGHT, "Using SQL database persistence"), cwd=tmp_path).stdout
    assert "unexpected option 'autosave_interval'" in persisted
    assert "accepted: " in persisted
    assert (tmp_path / "experiments.db").is_file()


@pytest.mark.redis
@claims(f"{OPENINSIGHT} § Using Redis for high-performance applications #0")
def test_openinsight_redis_example(tmp_path: Path) -> None:
    b = guide(OPENINSIGHT, "Using Redis for high-performance applications")
    printed = f'{PRINTED_REDIS_URL}", prefix="myapp:experiments"'
    with redis_prefix() as prefix:
        result = run(on_store(b, printed, f'{REDIS_URL}", prefix="{prefix}"'), cwd=tmp_path)
        assert result.stdout.strip() == "high-traffic-experiment"
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            assert any(client.scan_iter(match=f"{prefix}:*"))
        finally:
            client.close()


@claims(f"{OPENINSIGHT} § REST API endpoints #0")
def test_openinsight_rest_routes(site: Site) -> None:
    require_curl()
    stdout = ran(guide(OPENINSIGHT, "REST API endpoints"), site, comments=4)
    assert readme_blocks.json_documents(stdout)[-1] == []  # deleted: the list is empty


# ---- Multi-Armed Bandit Optimization API ------------------------------------------------------


@claims(
    f"{MAB} § Configuration #0",
    f"{MAB} § Installing and starting #0",
    f"{MAB} § 1. Create an experiment #1",
    f"{MAB} § 2. Post the day's metrics #0",
    f"{MAB} § 3. Get the allocation #0",
    f"{MAB} § 4. History #0",
    f"{MAB} § Assignment by session #0",
)
def test_mab_guide_on_the_server_it_configures(tmp_path: Path) -> None:
    """The guide's .env in a fresh directory and its `abpilot serve` there (the test's PORT and
    HOST override the file's, as environment variables do), then every request in order."""
    require_curl()
    configuration = guide(MAB, "Configuration")
    readme_blocks.EXERCISED.add(configuration.id)
    (tmp_path / ".env").write_text(configuration.text)
    serve = guide(MAB, "Installing and starting")
    port = free_port()
    env = block_env(tmp_path, HOST="127.0.0.1", PORT=str(port))
    with background(serve, cwd=tmp_path, env=env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, serve, tmp_path)
        site = Site(url, tmp_path)
        ran(guide(MAB, "1. Create an experiment", 1), site, comments=1)
        ran(guide(MAB, "2. Post the day's metrics"), site, comments=1)
        stdout = ran(guide(MAB, "3. Get the allocation"), site, comments=1)
        served = readme_blocks.json_documents(stdout)[0]
        ran(guide(MAB, "4. History"), site, comments=1)
        ran(guide(MAB, "Assignment by session"), site, comments=1)
        for page in ("/docs", "/redoc"):
            assert httpx.get(f"{url}{page}").status_code == 200
    assert isinstance(served, dict)
    assert [a["window_days"] for a in served["allocations"]] == [14, 14, 14]
    # The server read the guide's .env: its allocation is the one a Beta(1, 99) prior gives.
    assert served_probabilities(served) == pytest.approx(expected(tmp_path, prior_beta=99))
    assert served_probabilities(served) != pytest.approx(expected(tmp_path, prior_beta=1))
    assert (tmp_path / "abpilot.db").is_file()  # DATABASE_URL from the file


def served_probabilities(allocation: dict[str, Any]) -> list[float]:
    return [a["probability_best"] for a in allocation["allocations"]]


def expected(tmp: Path, *, prior_beta: float) -> list[float]:
    """The allocation of the guide's experiment and day, computed in-process with the .env's
    settings but the given prior."""
    import abpilot
    from abpilot.service.allocation import DailyInput
    from abpilot.settings import Settings

    defaults = Settings(_env_file=tmp / ".env").bandit_defaults()  # type: ignore[call-arg]
    assert (defaults.prior_alpha, defaults.prior_beta, defaults.window_days) == (1, 99, 14)
    service = abpilot.open("memory://", bandit_defaults=replace(defaults, prior_beta=prior_beta))
    service.create_experiment(
        name="homepage_cta_test",
        type="bandit",
        variants=[{"name": n} for n in ("control", "variant_a", "variant_b")],
    )
    service.start_experiment("homepage_cta_test")
    rows = [("control", 320), ("variant_a", 420), ("variant_b", 380)]
    service.record_daily_metrics(
        "homepage_cta_test",
        day=dt.date.today() - dt.timedelta(days=1),
        metrics=[DailyInput(variant, 10_000, clicks) for variant, clicks in rows],
    )
    return [a.probability_best or 0.0 for a in service.get_allocation("homepage_cta_test").arms]
