"""What the dashboard's browser tests share: a real server (`abpilot serve` on SQLite) seeded
through the REST API, with daily snapshots taken in-process with an injected clock; Debian's
Chromium driven by Playwright at 1440x900 and 390x844; helpers. Without Chromium or Playwright
the tests are skipped with the reason, except under CI=true where they fail. `tests.e2e.screenshots`
uses the same seeding for the README's pictures.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import abpilot
from abpilot.service import ExperimentService
from abpilot.service.snapshots import Snapshots
from tests.conftest import IN_CI
from tests.e2e.server import running_server

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright is not installed (pip install -e '.[test]')", allow_module_level=True)

# A page reads every experiment's analysis; on a loaded machine that takes more than 5 s.
expect.set_options(timeout=20_000)

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "artifacts"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
ADMIN_KEY, READ_KEY = "dashboard-admin-key", "dashboard-read-key"
CHARTS = ("chart-rates", "chart-posteriors", "chart-units", "chart-lift", "chart-daily")
SNAPSHOT_DAYS = 4


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


FLOW_METRICS: list[dict[str, Any]] = [
    {"key": "purchase"},
    {"key": "revenue", "kind": "value", "covariate": "pre_revenue"},
    {
        "key": "revenue_per_purchase",
        "kind": "ratio",
        "numerator": "revenue",
        "denominator": "purchase",
    },
    {"key": "errors", "role": "guardrail", "higher_is_better": False, "margin": 0.02},
]
FLOW_DIMENSIONS = {"country": ("nl", "de", "fr", "us"), "platform": ("ios", "android", "web")}


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def flow_day(api: httpx.Client, key: str, day: int, units: int) -> None:
    """A day of the checkout flow: green converts more often (most in the Netherlands, least
    in the US), so spends a little more, and errs as often as control. Each unit arrives with
    its revenue of the month before (`pre_revenue`, which predicts what it spends now: the
    adjusted metric) and its country and platform (the segments)."""
    rates = {"control": 0.10, "green": 0.14}
    countries, platforms = FLOW_DIMENSIONS["country"], FLOW_DIMENSIONS["platform"]
    uplift = {"nl": 0.06, "de": 0.02, "fr": 0.0, "us": -0.04}
    events: list[dict[str, Any]] = []
    for i in range(units):
        unit = f"{key}-d{day}-u{i}"
        variant = ok(api.post(f"/experiments/{key}/assign", json={"unit_id": unit}))["variant"]
        country, platform = countries[i * 7 % 4], platforms[i * 5 % 3]
        history = float(i * 37 % 60)  # last month's revenue
        events.append(
            {
                "type": "exposure",
                "experiment_id": key,
                "unit_id": unit,
                "covariates": {"pre_revenue": history},
                "dimensions": {"country": country, "platform": platform},
            }
        )
        rate = rates[variant["key"]] + (uplift[country] if variant["key"] == "green" else 0.0)
        draw = (i * 7919 % 1000) / 1000
        base = {"type": "conversion", "experiment_id": key, "unit_id": unit}
        bought = draw < rate * (0.5 + history / 60)  # last month's spenders buy more often
        if bought:
            events.append({**base, "metric": "purchase"})
        # Everyone spends (subscriptions, add-ons), last month's spenders more.
        spent = 0.6 * history + i * 13 % 41 + (15.0 if bought else 0.0)
        events.append({**base, "metric": "revenue", "value": spent})
        if (i * 6151 % 1000) / 1000 < 0.02:
            events.append({**base, "metric": "errors"})
    ok(api.post("/events", json={"events": events}))


def seed_checkout_flow(api: httpx.Client, database_url: str, key: str = "checkout-flow") -> None:
    """An A/B test with three goals and a guardrail over SNAPSHOT_DAYS days, a snapshot taken
    at the start and at the end of every day (in this process, with an injected clock)."""
    variants = [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}]
    body = {
        "key": key,
        "name": "Checkout flow",
        "variants": variants,
        "metrics": FLOW_METRICS,
        "dimensions": list(FLOW_DIMENSIONS),
        "settings": {"analysis": {"sample_size_per_variant": 2500}},
    }
    ok(api.post("/experiments", json=body))
    ok(api.put(f"/experiments/{key}/status", json={"status": "running"}))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=SNAPSHOT_DAYS)
    clock = Clock(start)
    with abpilot.open(database_url) as opened:
        snapshots = Snapshots(ExperimentService(opened.store, clock=clock))
        snapshots.take(key)
        for day in range(1, SNAPSHOT_DAYS + 1):
            flow_day(api, key, day, 300 + 100 * day)
            clock.now = start + dt.timedelta(days=day)
            snapshots.take(key)


def seed_srm(api: httpx.Client, key: str = "broken-split") -> None:
    """An A/B test whose control loses 40% of its exposures: a sample ratio mismatch."""
    variants = [{"key": "control", "weight": 0.5}, {"key": "bold", "weight": 0.5}]
    body = {"key": key, "name": "Broken split", "variants": variants}
    ok(api.post("/experiments", json=body))
    ok(api.put(f"/experiments/{key}/status", json={"status": "running"}))
    events: list[dict[str, Any]] = []
    for i in range(1200):
        unit = f"{key}-u{i}"
        variant = ok(api.post(f"/experiments/{key}/assign", json={"unit_id": unit}))["variant"]
        if variant["key"] == "control" and i % 5 < 2:
            continue  # lost exposures
        events.append({"type": "exposure", "experiment_id": key, "unit_id": unit})
        if (i * 7919 % 1000) / 1000 < (0.2 if variant["key"] == "bold" else 0.1):
            events.append({"type": "conversion", "experiment_id": key, "unit_id": unit})
    ok(api.post("/events", json={"events": events}))


def seed_capped(api: httpx.Client, key: str = "order-size") -> None:
    """An A/B test of basket values with a few huge ones, capped at the 95th percentile."""
    variants = [{"key": "control", "weight": 0.5}, {"key": "bundle", "weight": 0.5}]
    metrics = [{"key": "basket", "kind": "value", "cap": {"percentile": 0.95}}]
    body = {"key": key, "name": "Order size", "variants": variants, "metrics": metrics}
    ok(api.post("/experiments", json=body))
    ok(api.put(f"/experiments/{key}/status", json={"status": "running"}))
    events: list[dict[str, Any]] = []
    for i in range(400):
        unit = f"{key}-u{i}"
        variant = ok(api.post(f"/experiments/{key}/assign", json={"unit_id": unit}))["variant"]
        events.append({"type": "exposure", "experiment_id": key, "unit_id": unit})
        value = 20.0 + i * 7 % 30 + (5.0 if variant["key"] == "bundle" else 0.0)
        value = 5000.0 if i % 97 == 0 else value  # a reseller's order
        base = {"type": "conversion", "experiment_id": key, "unit_id": unit, "metric": "basket"}
        events.append({**base, "value": value})
    ok(api.post("/events", json={"events": events}))


def seed_all(api: httpx.Client, database_url: str) -> None:
    seed_ab_test(
        api, "checkout-button", "Checkout button colour", 1000, {"control": 0.09, "green": 0.13}
    )
    seed_checkout_flow(api, database_url)
    seed_srm(api)
    seed_capped(api)
    seed_bandit(api)
    seed_contextual(api)
    seed_interleaving(api)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dashboard")
    database_url = f"sqlite:///{root / 'dashboard.db'}"
    env = {
        "STORE": "sql",
        "DATABASE_URL": database_url,
        "SCHEDULER_ENABLED": "false",
        "API_KEYS": "",
        "JWT_SECRET": "",
    }
    with running_server(env, root) as url, httpx.Client(base_url=f"{url}/api/v1") as api:
        seed_all(api, database_url)
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


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def page(browser: Browser, viewport: str) -> Iterator[Page]:
    """A fresh page at the viewport; any script error or console error (a CSP violation, say)
    fails the test, and so does a page wider than the phone's screen."""
    context = browser.new_context(viewport=VIEWPORTS[viewport])
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    opened = context.new_page()
    problems: list[str] = []
    watch(opened, problems)
    yield opened
    if viewport == "phone" and not opened.is_closed():
        no_horizontal_scroll(opened)
    context.close()
    assert problems == []


def watch(page: Page, problems: list[str]) -> None:
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )


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
    viewport = page.viewport_size
    assert viewport is not None
    assert width <= viewport["width"], f"the page is {width}px wide at {viewport['width']}px"
