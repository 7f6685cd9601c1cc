"""Make the README's dashboard pictures: `python -m tests.e2e.screenshots` (from the repository,
with Chromium and Playwright installed) writes docs/dashboard*.png.

- docs/dashboard.png, docs/dashboard-phone.png: the page of an A/B test with three goals and a
  guardrail over four days of snapshots (the browser tests' seeding), at 1440x900 and 390x844;
- docs/dashboard-list.png: the list of the browser tests' experiments;
- docs/dashboard-bandit.png: `abpilot demo`'s pricing bandit, its weights by simulated day.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from tests.e2e.dashboard_fixtures import DESKTOP, PHONE, ROOT, chromium, seed_all
from tests.e2e.server import running_server

DOCS = ROOT / "docs"


def shoot(page: Page, url: str, path: Path, ready: str) -> None:
    page.goto(url)
    page.wait_for_function(
        "(id) => { const c = document.getElementById(id); return c && Chart.getChart(c); }",
        arg=ready,
    )
    page.wait_for_timeout(500)  # the last refresh's text
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        root = Path(folder)
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        seeded = f"sqlite:///{root / 'seeded.db'}"
        env = {"STORE": "sql", "SCHEDULER_ENABLED": "false", "API_KEYS": "", "JWT_SECRET": ""}
        with running_server({**env, "DATABASE_URL": seeded}, root) as url:
            with httpx.Client(base_url=f"{url}/api/v1") as api:
                seed_all(api, seeded)
            for viewport, name in ((DESKTOP, "dashboard.png"), (PHONE, "dashboard-phone.png")):
                page = browser.new_page(viewport=viewport)
                page_url = f"{url}/dashboard#/experiments/checkout-flow"
                shoot(page, page_url, DOCS / name, "chart-lift")
                page.close()
            page = browser.new_page(viewport=DESKTOP)
            page.goto(f"{url}/dashboard")
            page.locator("#experiments").wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=str(DOCS / "dashboard-list.png"), full_page=True)
            print("wrote docs/dashboard-list.png")
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
            shoot(page, page_url, DOCS / "dashboard-bandit.png", "chart-allocation")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
