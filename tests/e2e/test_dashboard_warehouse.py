"""A warehouse experiment's page in a real browser, at 1440x900 and 390x844, against a server
with a DuckDB warehouse and API keys: the latest refresh (time, row counts), Refresh now for an
admin key, the reason when the latest refresh failed (its figures staying those of the refresh
before), and no button for a read key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import IN_CI
from tests.e2e import dashboard_fixtures as fixtures
from tests.e2e.dashboard_fixtures import ADMIN_KEY, READ_KEY, ok, open_experiment, screenshot
from tests.e2e.server import running_server

try:
    import duckdb
except ImportError:
    if IN_CI:
        raise
    pytest.skip("duckdb is not installed (pip install -e '.[warehouse]')", allow_module_level=True)

# The shared fixtures, used here by name.
browser, viewport, page = fixtures.browser, fixtures.viewport, fixtures.page

KEY = "warehouse-checkout"
ORDERS = "SELECT user_id AS unit_id, ordered_at AS timestamp, amount FROM orders"
# The same columns, but `amount` as text: the source is accepted, a refresh is refused.
BROKEN_ORDERS = "SELECT user_id AS unit_id, ordered_at AS timestamp, 'n/a' AS amount FROM orders"


def make_warehouse(path: Path) -> None:
    """README § Warehouse-native analysis's shop: 4,000 exposures and their orders."""
    with duckdb.connect(str(path)) as db:
        db.execute(
            """CREATE TABLE exposures AS
            SELECT 'user-' || i AS user_id, 'warehouse-checkout' AS experiment,
                   CASE WHEN i % 2 = 0 THEN 'control' ELSE 'green' END AS arm,
                   TIMESTAMP '2026-03-02 08:00' + i * INTERVAL '1 minute' AS exposed_at
            FROM range(4000) t(i)"""
        )
        db.execute(
            """CREATE TABLE orders AS
            SELECT 'user-' || i AS user_id,
                   TIMESTAMP '2026-03-02 13:00' + i * INTERVAL '1 minute' AS ordered_at,
                   20 + (i % 7) * 5 AS amount
            FROM range(4000) t(i)
            WHERE (i * 7919) % 100 < CASE WHEN i % 2 = 0 THEN 30 ELSE 36 END"""
        )


def put_orders(api: httpx.Client, sql: str) -> None:
    ok(api.post("/warehouse/sources", json={"name": "orders", "kind": "fact", "sql": sql}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dashboard-warehouse")
    make_warehouse(root / "shop.duckdb")
    env = {
        "STORE": "sql",
        "DATABASE_URL": f"sqlite:///{root / 'warehouse.db'}",
        "WAREHOUSE_URL": f"duckdb:///{root / 'shop.duckdb'}",
        "SCHEDULER_ENABLED": "false",
        "API_KEYS": f"admin:{ADMIN_KEY},read:{READ_KEY}",
    }
    with running_server(env, root) as url, admin(url) as api:
        exposures = {
            "name": "exposures",
            "kind": "assignment",
            "sql": "SELECT user_id AS unit_id, experiment AS experiment_key, arm AS variant, "
            "exposed_at AS timestamp FROM exposures",
        }
        ok(api.post("/warehouse/sources", json=exposures))
        put_orders(api, ORDERS)
        metric = {"fact_source": "orders", "window_hours": 72}
        body = {
            "key": KEY,
            "name": "Checkout in the warehouse",
            "variants": [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}],
            "source": "warehouse",
            "assignment_source": "exposures",
            "metrics": [
                {"key": "purchase", **metric},
                {"key": "revenue", "kind": "value", "column": "amount", "aggregation": "sum"}
                | metric,
            ],
        }
        ok(api.post("/experiments", json=body))
        ok(api.put(f"/experiments/{KEY}/status", json={"status": "running"}))
        ok(api.post(f"/experiments/{KEY}/refresh"))
        yield url


def admin(url: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60)


def use_key(page: Page, key: str) -> None:
    page.context.add_init_script(f"localStorage.setItem('abpilot.apiKey', {key!r})")


def test_the_latest_refresh_its_failure_and_refresh_now(
    page: Page, server: str, viewport: str
) -> None:
    use_key(page, ADMIN_KEY)
    open_experiment(page, server, KEY, ("chart-rates",))
    with admin(server) as api:
        state = ok(api.get(f"/experiments/{KEY}/refresh"))
    counts = state["refresh"]["row_counts"]
    assert (state["failure"], counts["units"]) == (None, 4000)
    card = page.locator("#warehouse")
    expect(card.locator("#warehouse-latest")).to_contain_text("Latest refresh:")
    expect(card.locator("#warehouse-counts")).to_contain_text(
        f"4,000 units · {counts['exposures']:,} exposures · "
        f"{counts['fact_rows']['purchase']:,} purchase rows"
    )
    expect(card.locator("#warehouse-failure")).to_have_count(0)
    card.get_by_role("button", name="Refresh now").click()
    expect(page.get_by_role("status")).to_contain_text("Refreshed from the warehouse: 4,000 units")
    with admin(server) as api:
        put_orders(api, BROKEN_ORDERS)
        try:
            card.get_by_role("button", name="Refresh now").click()
            expect(page.get_by_role("alert").first).to_contain_text("The refresh failed")
            failure = ok(api.get(f"/experiments/{KEY}/refresh"))["failure"]
            assert failure is not None
            said = card.locator("#warehouse-failure")
            expect(said).to_have_attribute("data-code", failure["code"])
            expect(said).to_contain_text("The latest refresh failed")
            expect(said).to_contain_text(failure["message"].rstrip(".")[1:])
            expect(said).to_contain_text("still those of the refresh before it")
            expect(card.locator("#warehouse-latest")).to_contain_text("Last successful refresh:")
            # The analysis still reads the refresh before: 4,000 units.
            expect(page.locator("#tiles")).to_contain_text("4,000")
            screenshot(page, f"dashboard-warehouse-{viewport}.png")
        finally:
            put_orders(api, ORDERS)
            ok(api.post(f"/experiments/{KEY}/refresh"))


def test_a_read_key_sees_the_refresh_but_no_button(page: Page, server: str) -> None:
    use_key(page, READ_KEY)
    open_experiment(page, server, KEY, ("chart-rates",))
    expect(page.locator("#warehouse-latest")).to_contain_text("Latest refresh:")
    expect(page.locator("#read-only")).to_contain_text("read role")
    expect(page.get_by_role("button", name="Refresh now")).to_have_count(0)
