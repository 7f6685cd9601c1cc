"""The dashboard's page and files: public, safe headers, packaged with the service."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import abpilot.dashboard
from abpilot.api import create_app
from abpilot.api.auth import required_role
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.api.conftest import API

STATIC = Path(abpilot.dashboard.__file__).parent / "static"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(store="memory", scheduler_enabled=False, api_keys="admin:adm-key")
    with TestClient(create_app(settings, store=MemoryStore())) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/"])
def test_the_page_is_public_while_the_api_needs_a_key(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<base href="/dashboard/">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get(f"{API}/experiments").status_code == 401


def test_the_page_links_to_files_that_are_served(client: TestClient) -> None:
    page = client.get("/dashboard").text
    assets = ("static/dashboard.css", "static/analysis.css", "static/js/main.js")
    for asset in (*assets, "static/vendor/chart.umd.min.js"):
        assert asset in page
        response = client.get(f"/dashboard/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["cache-control"] == "no-cache"
    script = client.get("/dashboard/static/js/main.js")
    assert "javascript" in script.headers["content-type"]


def test_every_name_the_scripts_import_is_exported() -> None:
    """A bad import stops every module of the page from loading, so check them all here."""
    scripts = {path.name: path.read_text() for path in (STATIC / "js").glob("*.js")}
    assert "main.js" in scripts, f"no dashboard scripts found under {STATIC / 'js'}"
    exported = {
        name: set(re.findall(r"^export (?:async )?(?:function|const|class) (\w+)", text, re.M))
        for name, text in scripts.items()
    }
    for name, text in scripts.items():
        for names, target in re.findall(r'import \{([^}]*)\} from "\./([^"]+)"', text):
            assert target in scripts, f"{name} imports the missing {target}"
            for imported in (n.split(" as ")[0].strip() for n in names.split(",")):
                if imported:
                    assert imported in exported[target], f"{name}: {target} has no {imported}"


def test_files_outside_the_static_folder_are_not_served(client: TestClient) -> None:
    for path in ("/dashboard/static/../page.html", "/dashboard/static/%2e%2e/page.html"):
        assert client.get(path).status_code == 404
    assert client.get("/dashboard/static/missing.js").status_code == 404


def test_chart_js_is_vendored_with_its_licence() -> None:
    vendored = (STATIC / "vendor" / "chart.umd.min.js").read_text()
    assert vendored.startswith("/*!\n * Chart.js v4.")
    assert "MIT License" in (STATIC / "vendor" / "chart.js-LICENSE.md").read_text()


def test_the_base_follows_the_mount_prefix() -> None:
    settings = Settings(store="memory", scheduler_enabled=False)
    app = create_app(settings, store=MemoryStore())
    with TestClient(app, root_path="/abp") as client:
        assert '<base href="/abp/dashboard/">' in client.get("/dashboard").text


def test_the_dashboard_is_public_and_nothing_else_under_its_name() -> None:
    assert required_role("GET", "/dashboard") is None
    assert required_role("GET", "/dashboard/static") is None
    assert required_role("GET", "/dashboards") is not None


def test_the_session_names_the_role_of_the_key_sent() -> None:
    settings = Settings(
        store="memory", scheduler_enabled=False, api_keys="admin:adm-key,read:read-key"
    )
    with TestClient(create_app(settings, store=MemoryStore())) as client:
        assert client.get(f"{API}/session").status_code == 401
        wrong = client.get(f"{API}/session", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        for key, role in (("adm-key", "admin"), ("read-key", "read")):
            answer = client.get(f"{API}/session", headers={"Authorization": f"Bearer {key}"})
            assert answer.json() == {"role": role, "keys_required": True}
        by_header = client.get(f"{API}/session", headers={"X-API-Key": "read-key"})
        assert by_header.json()["role"] == "read"
    open_settings = Settings(store="memory", scheduler_enabled=False)
    with TestClient(create_app(open_settings, store=MemoryStore())) as client:
        assert client.get(f"{API}/session").json() == {"role": "admin", "keys_required": False}


def test_snapshots_are_read_through_the_api() -> None:
    settings = Settings(store="memory", scheduler_enabled=False)
    with TestClient(create_app(settings, store=MemoryStore())) as client:
        variants = [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}]
        body = {"key": "shop", "variants": variants, "metrics": [{"key": "purchase"}]}
        assert client.post(f"{API}/experiments", json=body).status_code == 201
        assert client.get(f"{API}/experiments/shop/snapshots").json()["snapshots"] == []
        client.put(f"{API}/experiments/shop/status", json={"status": "running"})
        assert client.app.state.snapshots.take_if_due() == 1  # type: ignore[attr-defined]
        read = client.get(f"{API}/experiments/shop/snapshots").json()
        assert (read["key"], read["metrics"], read["alpha"]) == ("shop", ["purchase"], 0.05)
        [snapshot] = read["snapshots"]
        assert [v["key"] for v in snapshot["variants"]] == ["control", "green"]
        assert snapshot["variants"][1]["metrics"]["purchase"]["lift"] is None  # no data yet
        missing = client.get(f"{API}/experiments/nope/snapshots")
        assert missing.status_code == 404
