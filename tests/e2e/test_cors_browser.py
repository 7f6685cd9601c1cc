"""CORS in a real browser (Debian's Chromium driven by Playwright): a page served from another
origin calls a real `abpilot serve` the way the README's browser set-ups do (the FeatureVisor JS
SDK fetching a datafile and posting /expose, an OFREP web provider posting evaluations), with a
write key in `Authorization`, so the POSTs are preflighted.

The page and the service are both on 127.0.0.1 but on different ports: different origins. With
CORS_ORIGINS naming the page's origin every call succeeds; without it, or from an origin it does
not name, the browser blocks every call and the preflighted POSTs never reach the service.
Skipped without Chromium or Playwright, except under CI=true where they fail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.datafile_sample import FEATURE, PATH, write_datafiles
from tests.e2e.dashboard_fixtures import chromium, ok
from tests.e2e.server import running_server

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - test_dashboard skips (or fails in CI) first
    pytest.skip("playwright is not installed", allow_module_level=True)

ADMIN_KEY, WRITE_KEY = "cors-admin-key", "cors-write-key"
PAGE = b"<!doctype html><meta charset=utf-8><title>shop</title><p>A page on another origin."

# What the page runs: the calls of the FeatureVisor JS SDK and of an OFREP web provider.
CALLS = """
async ({api, key, datafile, feature}) => {
  const attempt = async (run) => {
    try { return await run(); } catch (error) { return {error: String(error)}; }
  };
  const json = {"Content-Type": "application/json", "Authorization": `Bearer ${key}`};
  const results = {};
  results.datafile = await attempt(async () => {
    const r = await fetch(`${api}/datafile/${datafile}`);
    const body = await r.json();
    return {status: r.status, etag: r.headers.get("ETag"),
            requestId: r.headers.get("X-Request-ID"), features: Object.keys(body.features)};
  });
  const etag = results.datafile.etag || '"none"';
  results.revalidate = await attempt(async () => {
    const r = await fetch(`${api}/datafile/${datafile}`, {headers: {"If-None-Match": etag}});
    return {status: r.status};
  });
  results.expose = await attempt(async () => {
    const body = {datafile, features: {[feature]: "treatment"}, unit_id: "browser-user"};
    const r = await fetch(`${api}/expose`,
                          {method: "POST", headers: json, body: JSON.stringify(body)});
    return {status: r.status, body: await r.json()};
  });
  results.flag = await attempt(async () => {
    const r = await fetch(`${api}/ofrep/v1/evaluate/flags/checkout`, {
      method: "POST", headers: json,
      body: JSON.stringify({context: {targetingKey: "browser-user"}})});
    return {status: r.status, body: await r.json()};
  });
  results.flags = await attempt(async () => {
    const r = await fetch(`${api}/ofrep/v1/evaluate/flags`, {
      method: "POST", headers: json,
      body: JSON.stringify({context: {targetingKey: "browser-user"}})});
    return {status: r.status, etag: r.headers.get("ETag"), body: await r.json()};
  });
  return results;
}
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def page_origins() -> Iterator[tuple[str, str]]:
    """Two origins serving the page: the one CORS_ORIGINS names, and another."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


def serve(root: Path, cors_origins: str) -> Iterator[str]:
    env = {
        "STORE": "sql",
        "DATABASE_URL": f"sqlite:///{root / 'cors.db'}",
        "SCHEDULER_ENABLED": "false",
        "DATAFILES_DIR": str(write_datafiles(root / "datafiles")),
        "API_KEYS": f"admin:{ADMIN_KEY},write:{WRITE_KEY}",
        "JWT_SECRET": "",
        "CORS_ORIGINS": cors_origins,
    }
    with running_server(env, root) as url:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=admin) as api:
            variants = [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}]
            ok(api.post("/experiments", json={"key": "checkout", "variants": variants}))
            ok(api.put("/experiments/checkout/status", json={"status": "running"}))
        yield url


@pytest.fixture(scope="module")
def with_cors(
    tmp_path_factory: pytest.TempPathFactory, page_origins: tuple[str, str]
) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("with-cors"), page_origins[0])


@pytest.fixture(scope="module")
def without_cors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("without-cors"), "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def call_from(browser: Browser, origin: str, api: str) -> tuple[dict[str, Any], list[str]]:
    """Open the page at ``origin``, make every call to ``api``; the results and console errors."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{origin}/shop.html")
    arguments = {"api": api, "key": WRITE_KEY, "datafile": PATH, "feature": FEATURE}
    results: dict[str, Any] = page.evaluate(CALLS, arguments)
    context.close()
    return results, errors


def requests_seen(api: str, method: str, route: str) -> int:
    """How many ``method route`` requests reached the service (its Prometheus counter)."""
    total = 0
    for line in httpx.get(f"{api}/metrics").text.splitlines():
        if line.startswith("abpilot_requests_total{") and (
            f'method="{method}"' in line and f'route="{route}"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def exposures(api: str) -> int:
    stats = httpx.get(f"{api}/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    (feature,) = stats["features"]
    return sum(v["exposures"] for v in feature["variations"])


def test_a_listed_origin_may_call_every_browser_face(
    browser: Browser, with_cors: str, page_origins: tuple[str, str]
) -> None:
    preflights = requests_seen(with_cors, "OPTIONS", "unmatched")
    results, errors = call_from(browser, page_origins[0], with_cors)
    assert errors == []
    datafile = results["datafile"]
    assert (datafile["status"], datafile["features"]) == (200, [FEATURE])
    # ETag and X-Request-ID are exposed to the page's script
    assert datafile["etag"].startswith('"')
    assert len(datafile["requestId"]) > 0
    assert results["revalidate"] == {"status": 304}
    assert results["expose"]["status"] == 200, results["expose"]
    assert results["expose"]["body"]["applied"] == 1
    assert results["flag"]["status"] == 200, results["flag"]
    assert results["flag"]["body"]["variant"] in {"control", "green"}
    flags = results["flags"]
    assert flags["status"] == 200
    assert "checkout" in {flag["key"] for flag in flags["body"]["flags"]}
    assert flags["etag"]
    assert exposures(with_cors) == 1
    # If-None-Match, the JSON posts and Authorization made the browser ask first.
    assert requests_seen(with_cors, "OPTIONS", "unmatched") >= preflights + 4


@pytest.mark.parametrize("case", ["without CORS_ORIGINS", "from an origin it does not list"])
def test_otherwise_the_browser_blocks_every_call(
    browser: Browser,
    with_cors: str,
    without_cors: str,
    page_origins: tuple[str, str],
    case: str,
) -> None:
    api, origin = (
        (without_cors, page_origins[0])
        if case == "without CORS_ORIGINS"
        else (with_cors, page_origins[1])
    )
    before = exposures(api), requests_seen(api, "POST", "/expose")
    results, errors = call_from(browser, origin, api)
    for name, result in results.items():
        assert result == {"error": "TypeError: Failed to fetch"}, name
    assert any("blocked by CORS policy" in e for e in errors), errors
    # The preflighted POSTs were never sent.
    assert (exposures(api), requests_seen(api, "POST", "/expose")) == before
