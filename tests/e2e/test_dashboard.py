"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real server.

The server runs `abpilot serve` on SQLite; every experiment is seeded through the REST API. Without
Chromium or Playwright the tests are skipped with the reason, except under CI=true where they fail.
Screenshots go to artifacts/ (git-ignored); with ABPILOT_UPDATE_SCREENSHOT=1 the experiment page's
is also copied to docs/dashboard.png, the README's picture.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.e2e.server import running_server

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright is not installed (pip install -e '.[test]')", allow_module_level=True)

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ADMIN_KEY, READ_KEY = "dashboard-admin-key", "dashboard-read-key"
CHARTS = ("chart-allocation", "chart-rates", "chart-posteriors", "chart-units")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


# --- seeding through the REST API


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, (response.request.url, response.status_code, response.text)
    return response.json() if response.content else None


def seed_ab_test(
    api: httpx.Client, key: str, name: str, units: int, rates: dict[str, float]
) -> None:
    variants = [{"key": k, "weight": 1 / len(rates)} for k in rates]
    ok(api.post("/experiments", json={"key": key, "name": name, "variants": variants}))
    ok(api.put(f"/experiments/{key}/status", json={"status": "running"}))
    events: list[dict[str, Any]] = []
    for i in range(units):
        unit = f"{key}-user-{i}"
        variant = ok(api.post(f"/experiments/{key}/assign", json={"unit_id": unit}))["variant"]
        events.append({"type": "exposure", "experiment_id": key, "unit_id": unit})
        if (i * 7919 % 1000) / 1000 < rates[variant["key"]]:  # deterministic "random"
            events.append({"type": "conversion", "experiment_id": key, "unit_id": unit})
    ok(api.post("/events", json={"events": events}))


def seed_bandit(api: httpx.Client) -> None:
    """Four days of daily totals, each followed by a recalculation that moves the weights."""
    ctr = {"control": 0.030, "variant_a": 0.036, "variant_b": 0.033}
    ok(
        api.post(
            "/experiments",
            json={
                "key": "hero-banner",
                "name": "Hero banner",
                "type": "bandit",
                "variants": [
                    {"key": "control", "weight": 0.34, "is_control": True},
                    {"key": "variant_a", "weight": 0.33},
                    {"key": "variant_b", "weight": 0.33},
                ],
                "settings": {"bandit": {"prior_alpha": 1, "prior_beta": 99}},
            },
        )
    )
    ok(api.put("/experiments/hero-banner/status", json={"status": "running"}))
    weights = {"control": 0.34, "variant_a": 0.33, "variant_b": 0.33}
    for days_ago in (4, 3, 2, 1):
        day = (dt.date.today() - dt.timedelta(days=days_ago)).isoformat()
        rows = []
        for arm, rate in ctr.items():
            impressions = round(30_000 * weights[arm])
            rows.append(
                {
                    "variant_name": arm,
                    "impressions": impressions,
                    "clicks": round(impressions * rate),
                }
            )
        ok(api.post("/experiments/hero-banner/metrics", json={"date": day, "metrics": rows}))
        ok(api.post("/experiments/hero-banner/recalculate"))
        changes = ok(api.get("/experiments/hero-banner/history"))["weight_changes"]
        if changes:
            weights = changes[-1]["weights"]


def seed_contextual(api: httpx.Client) -> None:
    arms = [
        {"key": k, "weight": w} for k, w in (("svd", 0.34), ("embeddings", 0.33), ("graph", 0.33))
    ]
    contextual = {"attributes": {"user_type": ["new", "returning"]}, "holdout": 0.2}
    contextual["control"] = {"arm": "svd"}
    body = {"key": "recs", "name": "Recommendations", "type": "contextual_bandit", "variants": arms}
    ok(api.post("/experiments", json={**body, "settings": {"contextual": contextual}}))
    ok(api.put("/experiments/recs/status", json={"status": "running"}))
    success = {"svd": 0.2, "embeddings": 0.3, "graph": 0.45}
    for i in range(120):
        context = {"user_type": "new" if i % 2 else "returning"}
        decision = ok(
            api.post("/experiments/recs/decide", json={"unit_id": f"u{i}", "context": context})
        )
        if (i * 6151 % 1000) / 1000 < success[decision["arm"]]:
            feedback = {"decision_id": decision["decision_id"], "event": "click"}
            ok(api.post("/experiments/recs/feedback", json=feedback))


def seed_interleaving(api: httpx.Client) -> None:
    rankers = [{"key": "bm25", "weight": 0.5}, {"key": "neural", "weight": 0.5}]
    body = {"key": "search", "name": "Search ranking", "type": "interleaving", "variants": rankers}
    ok(api.post("/experiments", json=body))
    ok(api.put("/experiments/search/status", json={"status": "running"}))
    for i in range(60):
        lists = {"ranking_a": ["d1", "d2", "d3", "d4"], "ranking_b": ["d3", "d5", "d1", "d6"]}
        shown = ok(api.post("/experiments/search/interleave", json={"unit_id": f"u{i}", **lists}))
        if i % 3:
            clicked = "d3" if i % 4 else shown["items"][1]["item"]
            clicks = {"impression_id": shown["impression_id"], "items": [clicked]}
            ok(api.post("/experiments/search/clicks", json=clicks))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dashboard")
    env = {
        "STORE": "sql",
        "DATABASE_URL": f"sqlite:///{root / 'dashboard.db'}",
        "SCHEDULER_ENABLED": "false",
        "API_KEYS": "",
        "JWT_SECRET": "",
    }
    with running_server(env, root) as url, httpx.Client(base_url=f"{url}/api/v1") as api:
        seed_ab_test(
            api, "checkout-button", "Checkout button colour", 1000, {"control": 0.09, "green": 0.13}
        )
        seed_bandit(api)
        seed_contextual(api)
        seed_interleaving(api)
        seed_ab_test(api, "onboarding-copy", "Onboarding copy", 60, {"control": 0.2, "short": 0.25})
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; any script error or console error (a CSP violation, say) fails the test."""
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    yield opened
    context.close()
    assert problems == []


# --- helpers


def dataset_lengths(page: Page, canvas_id: str) -> list[int]:
    lengths: list[int] = page.evaluate(
        "(id) => Chart.getChart(document.getElementById(id)).data.datasets.map(d => d.data.length)",
        canvas_id,
    )
    return lengths


def open_experiment(page: Page, server: str, key: str, charts: tuple[str, ...] = CHARTS) -> None:
    page.goto(f"{server}/dashboard#/experiments/{key}")
    for canvas in charts:
        page.wait_for_function(
            "(id) => { const c = document.getElementById(id); return c && Chart.getChart(c); }",
            arg=canvas,
        )


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide at {PHONE['width']}px"


# --- the tests


def test_the_list_shows_every_experiment_with_its_leader_and_alerts(
    page: Page, server: str
) -> None:
    page.goto(f"{server}/dashboard")
    table = page.get_by_role("table")
    # The list reads each experiment's verdict: the worker's first analysis loads SciPy and
    # statsmodels, seconds on a busy machine.
    for name in ("Checkout button colour", "Hero banner", "Recommendations", "Search ranking"):
        expect(table.get_by_role("link", name=name)).to_be_visible(timeout=30_000)
    row = table.locator("tr[data-key='checkout-button']")
    expect(row).to_contain_text("A/B test")
    expect(row).to_contain_text("Running")
    expect(row).to_contain_text("1,000")
    expect(row).to_contain_text("P(best)")
    monitored = httpx.get(f"{server}/api/v1/monitoring/report").status_code == 200
    if monitored:
        expect(page.locator("#monitoring-banner")).to_contain_text("running experiments checked")
        expect(table.locator("tr[data-key='hero-banner'] .badge").last).to_be_visible()
    else:
        expect(page.locator("#monitoring-banner")).to_contain_text("not available")
    screenshot(page, "dashboard-list.png")
    page.get_by_role("link", name="Hero banner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hero banner")


def test_an_ab_test_page_draws_its_charts_and_says_its_verdict(page: Page, server: str) -> None:
    open_experiment(page, server, "checkout-button")
    for canvas in CHARTS:
        assert all(n > 0 for n in dataset_lengths(page, canvas)), canvas
        expect(page.locator(f"#{canvas}")).to_have_attribute("role", "img")
    # A worker's first analysis loads SciPy and statsmodels (seconds on a busy machine).
    url = f"{server}/api/v1/experiments/checkout-button/analysis"
    analysis = httpx.get(url, timeout=60).json()
    expect(page.locator("#verdict-headline")).not_to_be_empty()
    expect(page.locator("#verdict-lines")).to_contain_text(analysis["message"][1:60])
    decision = analysis["decision"]
    said = f"Decision: {decision['action']}"
    expect(page.locator("#verdict-lines")).to_contain_text(said)
    for reason in decision["reasons"]:
        expect(page.locator("#verdict-lines")).to_contain_text(reason["code"])
    assert len(dataset_lengths(page, "chart-posteriors")) == 2  # one curve per variant
    expect(page.locator("#chart-units-note")).to_contain_text("no time series")
    expect(page.locator("#table-0")).to_contain_text("green")
    path = screenshot(page, "dashboard.png")
    if os.environ.get("ABPILOT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, ROOT / "docs" / "dashboard.png")


def test_a_bandit_page_steps_through_its_weight_changes(page: Page, server: str) -> None:
    open_experiment(page, server, "hero-banner")
    history = httpx.get(f"{server}/api/v1/experiments/hero-banner/history").json()
    changes = len(history["weight_changes"])
    assert changes >= 2
    # the initial split, one point per weight change, and the point that closes the range
    assert dataset_lengths(page, "chart-allocation") == [changes + 2] * 3
    assert dataset_lengths(page, "chart-units") == [4] * 3  # cumulative impressions, 4 days
    expect(page.locator("#chart-units-title")).to_have_text("Cumulative impressions per variant")
    expect(page.locator("#verdict-headline")).to_contain_text("chance of being the best arm")
    screenshot(page, "dashboard-bandit.png")
    page.get_by_role("button", name="Recalculate").click()
    expect(page.get_by_role("status")).to_contain_text("Weights unchanged")  # same data


def test_contextual_and_interleaving_pages_have_their_own_views(page: Page, server: str) -> None:
    open_experiment(page, server, "recs")
    assert dataset_lengths(page, "chart-rates") == [3]
    expect(page.locator("#verdict-headline")).to_contain_text("control")
    expect(page.locator("#table-1")).to_contain_text("user_type=new")
    open_experiment(page, server, "search", ("chart-units", "chart-rates", "chart-posteriors"))
    assert dataset_lengths(page, "chart-units") == [3]  # A wins, B wins, ties
    expect(page.locator("#tiles")).to_contain_text("Impressions")
    expect(page.locator("#verdict-lines")).to_contain_text("bm25 (A) won")


def test_pause_resume_and_complete_call_the_api(page: Page, server: str) -> None:
    status_url = f"{server}/api/v1/experiments/onboarding-copy"
    open_experiment(page, server, "onboarding-copy")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("Experiment paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert httpx.get(status_url).json()["status"] == "paused"
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert httpx.get(status_url).json()["status"] == "running"
    page.get_by_role("button", name="Complete").click()
    dialog = page.get_by_role("dialog", name="Complete experiment")
    dialog.get_by_label("Winner").select_option("short")
    dialog.get_by_role("button", name="Complete").click()
    # The decision does not support that winner yet: refused, and said.
    expect(page.get_by_role("status")).to_contain_text("does not support 'short'")
    assert httpx.get(status_url).json()["status"] == "running"
    page.get_by_role("button", name="Complete").click()
    dialog.get_by_label("Winner").select_option("short")
    dialog.get_by_label("Override the analysis' decision").check()
    dialog.get_by_role("button", name="Complete").click()
    expect(page.get_by_text("Completed: no further actions.")).to_be_visible()
    completed = httpx.get(status_url).json()
    assert (completed["status"], completed["winner"]) == ("completed", "short")
    assert completed["settings"]["completion"]["override"] is True


def test_the_dashboard_fits_a_phone(page: Page, server: str) -> None:
    page.set_viewport_size(PHONE)
    page.goto(f"{server}/dashboard")
    expect(page.get_by_role("link", name="Checkout button colour")).to_be_visible()
    no_horizontal_scroll(page)
    screenshot(page, "dashboard-phone-list.png")
    open_experiment(page, server, "checkout-button")
    no_horizontal_scroll(page)
    for canvas in CHARTS:
        box = page.locator(f"#{canvas}").bounding_box()
        assert box is not None, canvas
        assert 0 < box["width"] <= PHONE["width"], canvas
    screenshot(page, "dashboard-phone.png")


def test_a_closed_service_asks_for_a_key_once(browser: Browser, tmp_path: Path) -> None:
    env = {
        "STORE": "sql",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'closed.db'}",
        "SCHEDULER_ENABLED": "false",
        "API_KEYS": f"admin:{ADMIN_KEY},read:{READ_KEY}",
    }
    with running_server(env, tmp_path) as url:
        admin = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        seed_ab_test(admin, "locked", "Locked experiment", 20, {"a": 0.5, "b": 0.5})
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(f"{url}/dashboard")
        dialog = page.get_by_role("dialog", name="API key")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Key or token").fill(READ_KEY)
        dialog.get_by_role("button", name="Save key").click()
        expect(page.get_by_role("link", name="Locked experiment")).to_be_visible(timeout=30_000)
        assert page.evaluate("localStorage.getItem('abpilot.apiKey')") == READ_KEY
        page.reload()  # the key is remembered
        page.get_by_role("link", name="Locked experiment").click()
        expect(dialog).to_be_hidden()
        page.get_by_role("button", name="Pause").click()  # a read key may not
        expect(page.get_by_role("alert")).to_contain_text("admin")
        assert admin.get("/experiments/locked").json()["status"] == "running"
        context.close()
        admin.close()
