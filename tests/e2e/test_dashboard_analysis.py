"""Issue 18's analysis on the dashboard's experiment page in a real browser, at 1440x900 and
390x844: an adjusted (CUPED) metric leads with its adjusted lift, interval and p-value and shows
the unadjusted ones, theta and the variance reduction beside them; a ratio metric and a capped
metric say what they are; the Segments card breaks the analysis down by a declared dimension.
Every figure is compared with what the REST API answers for the same experiment.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.e2e import dashboard_fixtures as fixtures
from tests.e2e.dashboard_fixtures import open_experiment, screenshot

# The shared fixtures, used here by name.
server, browser, viewport, page = fixtures.server, fixtures.browser, fixtures.viewport, fixtures.page  # fmt: skip  # noqa: E501


def analysis(server: str, key: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{server}/api/v1/experiments/{key}/analysis", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def variant(found: dict[str, Any], key: str) -> dict[str, Any]:
    return next(v for v in found["variants"] if v["key"] == key)


def signed_pct(x: float) -> str:
    """As the page writes a lift: "+4.1%", "−0.52%"."""
    percent = abs(x) * 100
    places = 2 if 0 < percent < 1 else 1
    sign = "+" if x > 0 else "−" if x < 0 else ""
    return f"{sign}{percent:.{places}f}%"


def p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def number(x: float, digits: int) -> str:
    """As the page writes a number: at most ``digits`` decimals, no trailing zeros."""
    return f"{x:,.{digits}f}".rstrip("0").rstrip(".")


def test_an_adjusted_metric_leads_with_its_adjusted_lift_beside_the_unadjusted_one(
    page: Page, server: str, viewport: str
) -> None:
    open_experiment(page, server, "checkout-flow")
    revenue = analysis(server, "checkout-flow", metric="revenue")
    assert (revenue["method"], revenue["covariate"]) == ("cuped", "pre_revenue")
    green = variant(revenue, "green")
    block = page.locator("#metrics [data-metric='revenue']")
    expect(block.locator(".tag-adjusted")).to_have_text(re.compile("adjusted", re.I))
    reduction = round(green["variance_reduction"] * 100)
    assert reduction > 20  # pre_revenue predicts revenue: the seeding's point
    expect(block.locator(".adjustment")).to_have_text(
        f"adjusted by pre_revenue, variance −{reduction}%"
    )
    row = block.locator("[data-variant='green']")
    # The main figures are the adjusted ones ...
    expect(row.locator(".lift-value")).to_have_text(signed_pct(green["lift"]))
    low, high = green["lift_ci"]
    expect(row.locator(".metric-lift")).to_contain_text(
        f"95% CI {signed_pct(low)} to {signed_pct(high)}"
    )
    expect(row.locator(".metric-verdict")).to_contain_text(
        f"p {p_text(green['p_value_adjusted'])} adjusted"
    )
    # ... with the unadjusted ones and theta beside them, and drawn under the bar.
    low, high = green["unadjusted_lift_ci"]
    expect(row.locator(".unadjusted")).to_have_text(
        f"unadjusted {signed_pct(green['unadjusted_lift'])} (95% CI {signed_pct(low)} to "
        f"{signed_pct(high)}), p {p_text(green['unadjusted_p_value'])}; "
        f"θ {number(green['theta'], 3)}"
    )
    expect(row.locator("svg.interval-bar line.unadjusted-line")).to_have_count(1)
    # A metric without a covariate says nothing of an adjustment.
    expect(page.locator("#metrics [data-metric='purchase'] .adjustment")).to_have_count(0)
    expect(page.locator("#metrics [data-metric='purchase'] .unadjusted")).to_have_count(0)
    screenshot(page, f"dashboard-adjusted-{viewport}.png")


def test_ratio_and_capped_metrics_say_what_they_are(page: Page, server: str) -> None:
    open_experiment(page, server, "checkout-flow")
    ratio = analysis(server, "checkout-flow", metric="revenue_per_purchase")
    assert ratio["kind"] == "ratio"
    block = page.locator("#metrics [data-metric='revenue_per_purchase']")
    expect(block.locator(".tag-ratio")).to_be_visible()
    expect(block.locator(".metric-about")).to_contain_text(
        "ratio: revenue / purchase (sums over units)"
    )
    green = variant(ratio, "green")
    expect(block.locator("[data-variant='green'] .lift-value")).to_have_text(
        signed_pct(green["lift"])
    )
    # Its daily snapshots have no ratio figures yet: not offered over time, and said so.
    options = page.locator("#history-metric option").all_inner_texts()
    assert options == ["purchase", "revenue", "errors"]
    expect(page.locator("#history-note")).to_contain_text(
        "Ratio metrics (revenue_per_purchase) are not in the daily snapshots yet."
    )
    open_experiment(page, server, "order-size", ("chart-rates",))
    capped = analysis(server, "order-size")
    assert capped["cap_percentile"] == 0.95
    block = page.locator("#metrics [data-metric='basket']")
    expect(block.locator(".tag-capped")).to_be_visible()
    expect(block.locator(".metric-about")).to_contain_text(
        f"capped at the 95th percentile ({number(capped['cap'], 2)} per unit)"
    )
    bundle = variant(capped, "bundle")
    expect(block.locator("[data-variant='bundle'] .lift-value")).to_have_text(
        signed_pct(bundle["lift"])
    )


def segment_rows(page: Page) -> list[str]:
    rows = page.locator("#segments-table tbody tr")
    return [rows.nth(i).get_attribute("data-segment") or "" for i in range(rows.count())]


def test_segments_break_the_analysis_down_by_a_declared_dimension(
    page: Page, server: str, viewport: str
) -> None:
    open_experiment(page, server, "checkout-flow")
    section = page.locator("#segments")
    picker = page.get_by_label("Break down by")
    expect(picker).to_have_value("country")
    assert picker.locator("option").all_inner_texts() == ["country", "platform"]
    found = analysis(server, "checkout-flow", dimension="country")["segments"]
    expect(section).to_have_attribute("data-dimension", "country")
    assert segment_rows(page) == [s["value"] for s in found["segments"]]
    for segment in found["segments"]:
        green = variant(segment["analysis"], "green")
        control = variant(segment["analysis"], "control")
        row = page.locator(f"#segments-table tr[data-segment='{segment['value']}']")
        expect(row.locator(".lift-value")).to_have_text(signed_pct(green["lift"]))
        expect(row).to_contain_text(f"{control['units']} / {green['units']}")
        expect(row.locator("td").last).to_have_text(p_text(segment["p_values_across_segments"][1]))
        expect(row.locator("svg.interval-bar")).to_be_visible()
    # The effect on purchase differs across countries (the seeding's uplift by country):
    # said as the API's Cochran's Q says it.
    [q] = [t for t in found["heterogeneity"] if t["metric"] == "purchase"]
    verdict = page.locator("#heterogeneity [data-metric='purchase'][data-variant='green']")
    expect(verdict).to_have_attribute("data-heterogeneous", str(q["heterogeneous"]).lower())
    said = "Differs" if q["heterogeneous"] else "Consistent"
    expect(verdict.locator(".badge")).to_have_text(said)
    expect(verdict).to_contain_text(f"Cochran's Q {number(q['q'], 2)} on {q['df']} df")
    screenshot(page, f"dashboard-segments-{viewport}.png")

    picker.select_option("platform")
    expect(section).to_have_attribute("data-dimension", "platform")
    expect(page.locator("#segments-table tbody tr")).to_have_count(3)
    page.get_by_label("Segment metric").select_option("revenue")
    expect(section).to_have_attribute("data-metric", "revenue")
    by_platform = analysis(server, "checkout-flow", dimension="platform", metric="revenue")
    first = by_platform["segments"]["segments"][0]
    row = page.locator(f"#segments-table tr[data-segment='{first['value']}']")
    expect(row.locator(".lift-value")).to_have_text(
        signed_pct(variant(first["analysis"], "green")["lift"])
    )
    # The overall figures above do not move with the breakdown.
    overall = variant(analysis(server, "checkout-flow", metric="revenue"), "green")
    expect(page.locator("#metrics [data-metric='revenue'] .lift-value")).to_have_text(
        signed_pct(overall["lift"])
    )


def test_an_experiment_without_dimensions_has_no_segments_card(page: Page, server: str) -> None:
    open_experiment(page, server, "checkout-button")
    expect(page.locator("#metrics")).to_be_visible()
    expect(page.locator("#segments")).to_have_count(0)
