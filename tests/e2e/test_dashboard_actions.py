"""Managing experiments from the dashboard in a real browser, at 1440x900 and 390x844: creating
one of every type (the API's 422 shown next to the field), editing the draft, starting, pausing
(after a confirmation), completing and deleting it; completing against the analysis, which
needs each problem confirmed and is recorded as an override; the copy-link button; and what a
read-only key, an admin key and a wrong key see."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e import dashboard_fixtures as fixtures
from tests.e2e.dashboard_fixtures import (
    ADMIN_KEY,
    DESKTOP,
    READ_KEY,
    seed_ab_test,
    seed_srm,
    watch,
)
from tests.e2e.server import running_server

# The shared fixtures, used here by name.
browser, viewport, page = fixtures.browser, fixtures.viewport, fixtures.page


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dashboard-actions")
    env = {
        "STORE": "sql",
        "DATABASE_URL": f"sqlite:///{root / 'actions.db'}",
        "SCHEDULER_ENABLED": "false",
        "API_KEYS": "",
        "JWT_SECRET": "",
    }
    with running_server(env, root) as url:
        yield url


def api(server: str) -> httpx.Client:
    return httpx.Client(base_url=f"{server}/api/v1")


def confirm(page: Page, title: str, answer: str) -> None:
    dialog = page.get_by_role("dialog", name=title)
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=answer).click()
    expect(dialog).to_be_hidden()


def test_an_experiment_is_created_edited_run_and_deleted_in_the_browser(
    page: Page, server: str, viewport: str
) -> None:
    key = f"signup-{viewport}"
    page.goto(f"{server}/dashboard")
    page.get_by_role("link", name="New experiment").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New experiment")
    page.get_by_label("Name", exact=True).fill(f"Signup form ({viewport})")
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_label("Variant 2 key").fill("bad key!")
    page.get_by_role("button", name="Add metric").click()
    page.get_by_label("Metric 2 key").fill("revenue")
    page.get_by_label("Metric 2 kind").select_option("value")
    page.get_by_label("Metric 2 covariate").fill("pre_revenue")
    page.get_by_role("button", name="Create draft").click()
    # The API's 422, next to the field it names; nothing is created.
    error = page.locator("[data-error-for='variants[1].key']")
    expect(error).to_contain_text("pattern")
    expect(page.get_by_label("Variant 2 key")).to_have_attribute("aria-invalid", "true")
    with api(server) as client:
        assert client.get(f"/experiments/{key}").status_code == 404
    page.get_by_label("Variant 2 key").fill("short")
    page.get_by_role("button", name="Create draft").click()
    expect(page).to_have_url(re.compile(f"#/experiments/{key}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Signup form ({viewport})")
    with api(server) as client:
        made = client.get(f"/experiments/{key}").json()
    assert [v["key"] for v in made["variants"]] == ["control", "short"]
    assert [(m["key"], m["kind"], m["covariate"]) for m in made["metrics"]] == [
        ("conversion", "binary", None),
        ("revenue", "value", "pre_revenue"),
    ]
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Name", exact=True)).to_have_value(f"Signup form ({viewport})")
    page.get_by_label("Name", exact=True).fill(f"Signup copy ({viewport})")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Signup copy ({viewport})")
    with api(server) as client:  # what the form does not change is kept
        edited = client.get(f"/experiments/{key}").json()
    assert edited["metrics"] == made["metrics"]
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    expect(page.locator("#experiment-timing")).to_contain_text("running since today")
    page.get_by_role("button", name="Pause").click()
    confirm(page, f"Pause Signup copy ({viewport})?", "Cancel")
    with api(server) as client:
        assert client.get(f"/experiments/{key}").json()["status"] == "running"
    page.get_by_role("button", name="Pause").click()
    confirm(page, f"Pause Signup copy ({viewport})?", "Pause")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.get_by_role("button", name="Complete").click()
    dialog = page.get_by_role("dialog", name="Complete experiment")
    dialog.get_by_label("Winner").select_option("")
    dialog.get_by_role("button", name="Complete").click()
    expect(page.locator("#verdict-headline")).to_have_text("Completed without a winner")
    page.get_by_role("button", name="Delete").click()
    confirm(page, f"Delete Signup copy ({viewport})?", "Delete")
    expect(page.get_by_role("heading", level=1)).to_have_text("Experiments")
    with api(server) as client:
        assert client.get(f"/experiments/{key}").status_code == 404


@pytest.mark.parametrize("kind", ["bandit", "contextual_bandit", "interleaving"])
def test_every_type_is_created_in_the_browser(
    page: Page, server: str, viewport: str, kind: str
) -> None:
    key = f"{kind.replace('_', '-')}-{viewport}"
    page.goto(f"{server}/dashboard#/new")
    page.get_by_label("Name", exact=True).fill(f"A {kind} ({viewport})")
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_label("Type", exact=True).select_option(kind)
    if kind == "contextual_bandit":  # the settings it needs come filled in, as JSON
        expect(page.get_by_label("Settings (JSON)")).to_have_value(re.compile("attributes"))
    page.get_by_role("button", name="Create draft").click()
    expect(page).to_have_url(re.compile(f"#/experiments/{key}$"))
    expect(page.locator("#experiment-meta")).to_contain_text("Draft")
    with api(server) as client:
        assert client.get(f"/experiments/{key}").json()["type"] == kind


def test_completing_against_the_analysis_needs_each_problem_confirmed(
    page: Page, server: str, viewport: str
) -> None:
    key = f"ship-{viewport}"
    with api(server) as client:
        seed_srm(client, key)
        decision = client.get(f"/experiments/{key}/analysis").json()["decision"]
    assert decision["action"] == "inconclusive"
    page.goto(f"{server}/dashboard#/experiments/{key}")
    page.get_by_role("button", name="Complete").click()
    dialog = page.get_by_role("dialog", name="Complete experiment")
    expect(dialog.locator("#complete-decision")).to_contain_text("inconclusive")
    dialog.get_by_label("Winner").select_option("control")  # what the analysis supports
    expect(dialog.locator("#complete-problems")).to_be_hidden()
    dialog.get_by_label("Winner").select_option("bold")
    problems = dialog.locator("#complete-problem-list li")
    codes = [problems.nth(i).get_attribute("data-problem") for i in range(problems.count())]
    assert codes == ["srm", "plan", "decision"]
    expect(problems.first).to_contain_text("Sample ratio mismatch")
    submit = dialog.get_by_role("button", name="Complete against the analysis")
    for i in range(len(codes)):
        expect(submit).to_be_disabled()
        problems.nth(i).get_by_role("checkbox").check()
    expect(submit).to_be_enabled()
    submit.click()
    expect(page.locator("#verdict-headline")).to_have_text(
        "Completed: bold chosen against the analysis"
    )
    expect(page.locator("#verdict")).to_contain_text("sample ratio mismatch")
    with api(server) as client:
        completed = client.get(f"/experiments/{key}").json()
    assert (completed["status"], completed["winner"]) == ("completed", "bold")
    assert completed["settings"]["completion"]["override"] is True
    page.goto(f"{server}/dashboard#/?q={key}")
    expect(page.locator(f"tr[data-key='{key}'] .decision-cell")).to_contain_text(
        "against the analysis"
    )


def test_copy_link_copies_the_page_address(page: Page, server: str, viewport: str) -> None:
    key = f"linked-{viewport}"
    with api(server) as client:
        seed_ab_test(client, key, "Linked", 40, {"a": 0.3, "b": 0.3})
    page.goto(f"{server}/dashboard#/experiments/{key}")
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("status")).to_contain_text("Link copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.url
    expect(page.locator("#experiment-meta")).to_contain_text("started")


def test_keys_decide_what_the_page_offers(browser: Browser, tmp_path: Path) -> None:
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
        problems: list[str] = []
        watch(page, problems)
        page.goto(f"{url}/dashboard")
        dialog = page.get_by_role("dialog", name="API key")
        expect(dialog).to_be_visible()
        # A wrong key is said to be wrong, and not saved.
        dialog.get_by_label("Key or token").fill("not-a-key")
        dialog.get_by_role("button", name="Save key").click()
        expect(dialog.locator("#key-error")).to_contain_text("not valid")
        expect(page.get_by_role("status")).not_to_contain_text("saved")
        assert page.evaluate("localStorage.getItem('abpilot.apiKey')") is None
        # A read key reads everything and is offered no action.
        dialog.get_by_label("Key or token").fill(READ_KEY)
        dialog.get_by_role("button", name="Save key").click()
        expect(page.get_by_role("status")).to_contain_text("read role")
        expect(page.get_by_role("link", name="Locked experiment")).to_be_visible()
        expect(page.get_by_role("link", name="New experiment")).to_have_count(0)
        page.reload()  # the key is remembered
        page.get_by_role("link", name="Locked experiment").click()
        expect(page.locator("#read-only")).to_contain_text("read role")
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
        expect(page.get_by_role("button", name="Complete")).to_have_count(0)
        # An admin key gets the buttons.
        page.get_by_role("button", name="API key").click()
        dialog.get_by_label("Key or token").fill(ADMIN_KEY)
        dialog.get_by_role("button", name="Save key").click()
        expect(page.get_by_role("button", name="Pause")).to_be_visible()
        assert admin.get("/experiments/locked").json()["status"] == "running"
        context.close()
        admin.close()
        assert problems == []
