"""Make the README's dashboard pictures: `python -m tests.e2e.screenshots` (from the repository,
with Chromium and Playwright installed) writes docs/dashboard*.png.

- docs/dashboard-ab-metrics.png, docs/dashboard-ab-metrics-phone.png: the page of an A/B test
  with three metrics (one adjusted by a covariate, one ratio) and a guardrail, broken down by
  country, over four days of snapshots (the browser tests' seeding), at 1440x900 and 390x844;
- docs/dashboard-segments.png, docs/dashboard-segments-phone.png: its Segments card;
- docs/dashboard-list.png: the list of the browser tests' experiments;
- docs/dashboard-bandit-history.png: `abpilot demo`'s pricing bandit, its weights by simulated
  day.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.dashboard_fixtures import DESKTOP, PHONE, ROOT, chromium, seed_all
from tests.e2e.server import running_server

DOCS = ROOT / "docs"


def wrote(path: Path) -> None:
    print(f"wrote {path.relative_to(ROOT)}")


def shoot(page: Page, url: str, path: Path, ready: str, shown: str | None = None) -> None:
    """A full-page picture once the chart ``ready`` is drawn (and ``shown`` is on the page)."""
    page.goto(url)
    if shown:
        page.locator(shown).wait_for()
    page.wait_for_function(
        "(id) => { const c = document.getElementById(id); return c && Chart.getChart(c); }",
        arg=ready,
    )
    page.wait_for_timeout(500)  # the last refresh's text
    page.screenshot(path=str(path), full_page=True)
    wrote(path)


def shoot_ab_test(browser: Browser, url: str) -> None:
    for viewport, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        page = browser.new_page(viewport=viewport)
        page_url = f"{url}/dashboard#/experiments/checkout-flow"
        picture = DOCS / f"dashboard-ab-metrics{suffix}.png"
        shoot(page, page_url, picture, "chart-lift", "#segments-table")
        path = DOCS / f"dashboard-segments{suffix}.png"
        # The sticky top bar would cover the card's top (CSSOM: the page's CSP allows it).
        page.evaluate("document.querySelector('.topbar').style.position = 'static'")
        page.locator("#segments").screenshot(path=str(path))
        wrote(path)
        page.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        root = Path(folder)
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        seeded = f"sqlite:///{root / 'seeded.db'}"
        env = {"STORE": "sql", "SCHEDULER_ENABLED": "false", "API_KEYS": "", "JWT_SECRET": ""}
        with running_server({**env, "DATABASE_URL": seeded}, root) as url:
            with httpx.Client(base_url=f"{url}/api/v1", timeout=120) as api:
                seed_all(api, seeded)
            shoot_ab_test(browser, url)
            page = browser.new_page(viewport=DESKTOP)
            page.goto(f"{url}/dashboard")
            page.locator("#experiments").wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=str(DOCS / "dashboard-list.png"), full_page=True)
            wrote(DOCS / "dashboard-list.png")
            page.close()
        demo = root / "demo.db"
        subprocess.run(
            [sys.executable, "-m", "abpilot", "demo", "--database", str(demo)],
            check=True,
            capture_output=True,
        )
        with running_server({**env, "DATABASE_URL": f"sqlite:///{demo}"}, root) as url:
            page = browser.new_page(viewport=DESKTOP)
            page_url = f"{url}/dashboard#/experiments/pricing"
            shoot(page, page_url, DOCS / "dashboard-bandit-history.png", "chart-allocation")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
