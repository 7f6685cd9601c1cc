"""The dashboard's views in a real browser (Debian's Chromium driven by Playwright) against a
real server, at 1440x900 and at 390x844 (every test runs at both; on the phone no page may
scroll sideways): the list's decision and evidence columns, search and filters in the URL,
every metric with its lift interval, guardrails and the decision, results over time, numbers a
sample ratio mismatch invalidates, checks that did not run, and each type's own page.
Screenshots go to artifacts/ (git-ignored); `python -m tests.e2e.screenshots` makes the README's.
"""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.e2e import dashboard_fixtures as fixtures
from tests.e2e.dashboard_fixtures import (
    SNAPSHOT_DAYS,
    dataset_lengths,
    open_experiment,
    screenshot,
)

# The shared fixtures, used here by name.
server, browser, viewport, page = fixtures.server, fixtures.browser, fixtures.viewport, fixtures.page  # fmt: skip  # noqa: E501

TYPES = {
    "checkout-button": "A/B test",
    "hero-banner": "Bandit",
    "recs": "Contextual bandit",
    "search": "Interleaving",
}


def test_the_list_has_one_decision_and_one_evidence_column_for_every_type(
    page: Page, server: str, viewport: str
) -> None:
    page.goto(f"{server}/dashboard")
    table = page.get_by_role("table")
    for key, label in TYPES.items():
        row = table.locator(f"tr[data-key='{key}']")
        expect(row).to_contain_text(label)
        # The evidence is the leader's chance of being best, whatever the type.
        expect(row.locator(".evidence-cell")).to_contain_text("chance of being best")
        expect(row.locator(".decision-cell .badge")).to_be_visible()
    row = table.locator("tr[data-key='checkout-button']")
    expect(row).to_contain_text("1,000")
    expect(row.locator(".timing")).to_contain_text("started")
    analysis = httpx.get(f"{server}/api/v1/experiments/checkout-button/analysis").json()
    said = {"ship": "Ship", "rollback": "Roll back", "continue": "Keep collecting"}
    expect(row.locator(".decision-cell")).to_contain_text(
        said.get(analysis["decision"]["action"], "Inconclusive")
    )
    broken = table.locator("tr[data-key='broken-split'] .evidence-cell")
    expect(broken).to_contain_text("not trustworthy")
    screenshot(page, f"dashboard-list-{viewport}.png")
    page.get_by_role("link", name="Hero banner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hero banner")


def test_search_and_filters_are_kept_in_the_url(page: Page, server: str) -> None:
    page.goto(f"{server}/dashboard")
    rows = page.locator("#experiments tbody tr[data-key]")
    expect(rows).to_have_count(7)
    page.get_by_label("Search").fill("CHECKOUT")  # by name or key, any case
    expect(rows).to_have_count(2)
    page.get_by_label("Type", exact=True).select_option("ab_test")
    assert re.search(r"#/\?q=CHECKOUT&type=ab_test$", page.url), page.url
    page.reload()  # the filters come back from the URL
    expect(page.get_by_label("Search")).to_have_value("CHECKOUT")
    expect(rows).to_have_count(2)
    page.get_by_label("Search").fill("hero")
    expect(page.get_by_text("No experiment matches.")).to_be_visible()
    page.get_by_label("Type", exact=True).select_option("all")
    page.get_by_label("Status", exact=True).select_option("running")
    expect(rows).to_have_count(1)
    assert page.url.endswith("#/?q=hero&status=running"), page.url


def test_every_metric_shows_its_lift_interval_guardrail_verdict_and_the_decision(
    page: Page, server: str, viewport: str
) -> None:
    open_experiment(page, server, "checkout-flow")
    metrics = page.locator("#metrics [data-metric]")
    expect(metrics).to_have_count(4)
    for key, place in (
        ("purchase", "primary"),
        ("revenue", "secondary"),
        ("revenue_per_purchase", "secondary"),
        ("errors", "guardrail"),
    ):
        block = page.locator(f"#metrics [data-metric='{key}']")
        expect(block).to_contain_text(place)
        expect(block.locator("[data-variant='green'] svg.interval-bar rect")).to_have_count(2)
        expect(block.locator("[data-variant='green']")).to_contain_text("95% CI")
    guardrail = page.locator("#metrics [data-metric='errors'] .metric-verdict .badge").first
    analysis = httpx.get(f"{server}/api/v1/experiments/checkout-flow/analysis").json()
    [check] = [g for g in analysis["guardrails"] if g["variant"] == "green"]
    expected = "Safe" if check["harm_ruled_out"] else "Not yet safe|Harmed|Not tested"
    expect(guardrail).to_have_text(re.compile(expected))
    decision = analysis["decision"]
    expect(page.locator("#verdict .decision")).to_have_attribute("data-action", decision["action"])
    for reason in decision["reasons"]:
        expect(page.locator(f"#verdict [data-reason='{reason['code']}']")).to_be_visible()
    revenue = httpx.get(
        f"{server}/api/v1/experiments/checkout-flow/analysis", params={"metric": "revenue"}
    ).json()
    green = next(v for v in revenue["variants"] if v["key"] == "green")
    lift = f"{'+' if green['lift'] > 0 else '−'}{abs(green['lift']) * 100:.1f}%"
    expect(page.locator("#metrics [data-metric='revenue'] .lift-value")).to_have_text(lift)
    screenshot(page, f"dashboard-metrics-{viewport}.png")


def test_results_over_time_draw_the_cumulative_lift_and_the_units_per_day(
    page: Page, server: str
) -> None:
    open_experiment(page, server, "checkout-flow")
    days = SNAPSHOT_DAYS + 1
    expect(page.locator("#history")).to_have_attribute("data-days", str(days))
    # green's upper bound, lower bound and lift, one point per day
    assert dataset_lengths(page, "chart-lift") == [days] * 3
    assert dataset_lengths(page, "chart-daily") == [days] * 2
    units = page.evaluate(
        "() => Chart.getChart(document.getElementById('chart-daily')).data.datasets"
        ".map(d => d.data.reduce((a, b) => a + b, 0)).reduce((a, b) => a + b, 0)"
    )
    assert units == sum(300 + 100 * day for day in range(1, SNAPSHOT_DAYS + 1))
    read = httpx.get(f"{server}/api/v1/experiments/checkout-flow/snapshots").json()
    last = read["snapshots"][-1]["variants"][1]["metrics"]
    page.get_by_label("Metric", exact=True).select_option("revenue")
    expect(page.locator("#chart-lift-note")).to_contain_text("revenue")
    drawn = page.evaluate(
        "() => Chart.getChart(document.getElementById('chart-lift')).data.datasets[2].data.at(-1)"
    )
    assert abs(drawn - last["revenue"]["lift"] * 100) < 1e-9


def test_a_sample_ratio_mismatch_marks_every_number_it_invalidates(page: Page, server: str) -> None:
    open_experiment(page, server, "broken-split")
    expect(page.locator("#metrics")).to_have_attribute("data-invalid", "srm")
    expect(page.locator("#metrics .metric-row.invalidated")).to_have_count(1)
    expect(page.locator("#metrics")).to_contain_text("Not trustworthy")
    expect(page.locator("#verdict-headline")).to_contain_text("Traffic split is off")
    expect(page.locator("#verdict")).not_to_contain_text("leads with")
    expect(page.locator("#verdict")).not_to_contain_text("[")  # counts said as "1 / 2"
    expect(page.locator("#verdict [data-reason='srm_detected']")).to_contain_text(" / ")
    expect(page.locator("#tables section.invalidated")).to_contain_text("not trustworthy")
    expect(page.locator("figure[data-chart='chart-rates']")).to_have_class(
        re.compile("invalidated")
    )


def test_checks_that_did_not_run_say_so_in_grey(page: Page, server: str) -> None:
    if httpx.get(f"{server}/api/v1/monitoring/report").status_code != 200:
        open_experiment(page, server, "checkout-flow")
        expect(page.locator("#alerts-body")).to_contain_text("not available")
        return
    open_experiment(page, server, "search", ("chart-units",))
    expect(page.locator("#alerts-body .check")).not_to_have_count(0)
    open_experiment(page, server, "hero-banner", ("chart-allocation",))
    # A bandit fed daily totals has no units the SRM check could test: not "OK". The report
    # says which checks did not run (`ran`), and the page greys exactly those.
    report = httpx.get(f"{server}/api/v1/monitoring/report").json()
    [health] = [e for e in report["experiments"] if e["key"] == "hero-banner"]
    for check in health["checks"]:
        shown = "not_run" if check["status"] == "ok" and not check["ran"] else check["status"]
        item = page.locator(f"#alerts-body [data-check='{check['name']}']")
        expect(item).to_have_attribute("data-status", shown)
    assert any(not c["ran"] for c in health["checks"])
    srm = page.locator("#alerts-body [data-check='srm']")
    expect(srm).to_have_attribute("data-status", "not_run")
    expect(srm.locator(".badge")).to_have_text("Not checked")
    expect(page.locator("#alerts-body")).not_to_contain_text("0.0 hours")
    stale = page.locator("#alerts-body [data-check='stale'] p")
    expect(stale).to_have_text(re.compile(r"ago\.$"))
    open_experiment(page, server, "checkout-button")
    expect(page.locator("#alerts-body [data-check='srm']")).to_have_attribute("data-status", "ok")


def test_a_bandit_page_draws_its_weights_by_period(page: Page, server: str) -> None:
    open_experiment(page, server, "hero-banner", ("chart-allocation", "chart-units"))
    history = httpx.get(f"{server}/api/v1/experiments/hero-banner/history").json()
    changes = len(history["weight_changes"])
    assert changes >= 2
    # the start, then one bar per weight change, for each of the three arms
    assert dataset_lengths(page, "chart-allocation") == [changes + 1] * 3
    labels = page.evaluate(
        "() => Chart.getChart(document.getElementById('chart-allocation')).data.labels"
    )
    assert labels[0] == "Start"
    assert labels[1:] == [f"Period {n}" for n in range(1, changes + 1)]
    assert dataset_lengths(page, "chart-units") == [4] * 3  # cumulative impressions, 4 days
    expect(page.locator("#verdict-headline")).to_contain_text("chance of being the best arm")
    expect(page.locator("#verdict")).not_to_contain_text("nothing to test")
    expect(page.locator("#metrics")).to_be_hidden()  # no events to analyse
    screenshot(page, "dashboard-bandit.png")
    page.get_by_role("button", name="Recalculate").click()
    expect(page.get_by_role("status")).to_contain_text("Weights unchanged")  # same data


def test_contextual_and_interleaving_pages_have_their_own_views(page: Page, server: str) -> None:
    open_experiment(page, server, "recs", ("chart-rates",))
    assert dataset_lengths(page, "chart-rates") == [3]
    expect(page.locator("#verdict-headline")).to_contain_text("control")
    expect(page.locator("#verdict-lines")).to_contain_text("the control policy's, on the holdout")
    contexts = page.locator("#table-1")
    expect(contexts).to_contain_text("user_type=new")
    for arm in ("svd", "embeddings", "graph"):  # a column per arm, per context
        expect(contexts.locator("th", has_text=arm)).to_have_count(1)
    open_experiment(page, server, "search", ("chart-units", "chart-rates", "chart-posteriors"))
    assert dataset_lengths(page, "chart-units") == [3]  # A wins, B wins, ties
    expect(page.locator("#tiles")).to_contain_text("Impressions")
    expect(page.locator("#verdict-lines")).to_contain_text("bm25 (A) won")
