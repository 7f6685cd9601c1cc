"""CORS_ORIGINS: which origins may call from a browser, preflights, and refusals at start-up.
(tests/e2e/test_cors_browser.py checks the same in a real browser.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from abpilot.api import create_app
from abpilot.cli import app as cli
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.api.conftest import API
from tests.api.datafile_sample import PATH, write_datafiles

PAGE = "https://app.example.com:8443"
OTHER = "https://evil.example"
DATAFILE = f"/datafile/{PATH}"
OFREP = "/ofrep/v1/evaluate/flags"


def make_client(tmp_path: Path, **settings: object) -> TestClient:
    options = {
        "store": "memory",
        "scheduler_enabled": False,
        "datafiles_dir": write_datafiles(tmp_path / "datafiles"),
        **settings,
    }
    return TestClient(create_app(Settings(**options), store=MemoryStore()))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, cors_origins=f"{PAGE}, http://127.0.0.1:3000") as test_client:
        yield test_client


def preflight(
    client: TestClient, path: str, method: str, headers: str | None = None, origin: str = PAGE
) -> dict[str, str]:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        request["Access-Control-Request-Headers"] = headers
    response = client.options(path, headers=request)
    return {"status": str(response.status_code), **response.headers}


def not_started(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("serve went on to start the server")


# --- settings


def test_origins_are_read_as_the_browser_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().cors_origins == ()  # nothing by default
    monkeypatch.setenv("CORS_ORIGINS", " HTTPS://App.Example.com:443 ,http://127.0.0.1:3000,, ")
    assert Settings().cors_origins == ("https://app.example.com", "http://127.0.0.1:3000")
    monkeypatch.setenv("CORS_ORIGINS", "*")
    assert Settings().cors_origins == ("*",)
    monkeypatch.setenv("CORS_ORIGINS", "http://[::1]:8080")
    assert Settings().cors_origins == ("http://[::1]:8080",)


@pytest.mark.parametrize(
    "entry",
    [
        "app.example.com",  # no scheme
        "https://app.example.com/",  # a path
        "https://app.example.com/page",
        "https://app.example.com:99999",
        "https://app.example.com:port",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://*.example.com",
        "null",
        "**",
    ],
)
def test_an_entry_that_is_not_an_origin_is_refused(entry: str) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings(cors_origins=f"{PAGE},{entry}")
    message = str(raised.value)
    assert "CORS_ORIGINS entry" in message
    assert repr(entry) in message
    assert "https://app.example.com:8080" in message  # what an origin looks like


def test_serve_stops_on_a_bad_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example.com/")
    monkeypatch.setenv("STORE", "memory")
    monkeypatch.setattr(uvicorn, "run", not_started)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2  # a message, not a traceback
    assert "CORS_ORIGINS" in result.output
    assert "an origin has no path" in " ".join(result.output.split())


# --- preflights and answers


def test_preflights_of_the_faces_a_browser_uses_are_allowed(client: TestClient) -> None:
    for path, method, headers in (
        (DATAFILE, "GET", "if-none-match"),
        ("/expose", "POST", "content-type"),
        ("/convert", "POST", "content-type,authorization"),
        (OFREP, "POST", "content-type, authorization, if-none-match"),
        (f"{OFREP}/button", "POST", "content-type,x-api-key"),
        (f"{API}/experiments/button", "PATCH", "content-type,authorization,x-request-id"),
        (f"{API}/experiments/button", "DELETE", None),
    ):
        answer = preflight(client, path, method, headers)
        assert answer["status"] == "200", (path, answer)
        assert answer["access-control-allow-origin"] == PAGE
        assert method in answer["access-control-allow-methods"].split(", ")
        allowed = answer["access-control-allow-headers"].lower().split(", ")
        for header in (headers or "").split(","):
            assert header.strip() in [*allowed, ""], header
        assert "access-control-allow-credentials" not in answer


def test_a_preflight_needs_no_key(tmp_path: Path) -> None:
    """Browsers never send credentials in a preflight; the request that follows needs them."""
    with make_client(tmp_path, cors_origins=PAGE, api_keys="write:wr-key") as closed:
        assert preflight(closed, "/expose", "POST", "content-type,authorization")["status"] == "200"
        refused = closed.post("/expose", json={}, headers={"Origin": PAGE})
        assert refused.status_code == 401
        # the page can read why
        assert refused.headers["access-control-allow-origin"] == PAGE


def test_answers_name_the_origin_and_expose_etag_and_request_id(client: TestClient) -> None:
    response = client.get(DATAFILE, headers={"Origin": PAGE})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE
    exposed = response.headers["access-control-expose-headers"].lower().split(", ")
    assert {"etag", "x-request-id"} <= set(exposed)
    assert "origin" in response.headers["vary"].lower()
    cached = client.get(
        DATAFILE, headers={"Origin": PAGE, "If-None-Match": response.headers["etag"]}
    )
    assert (cached.status_code, cached.headers["access-control-allow-origin"]) == (304, PAGE)


def test_a_too_large_body_is_refused_readably(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=PAGE, max_body_bytes=1024) as small:
        response = small.post("/expose", content=b"x" * 2048, headers={"Origin": PAGE})
        assert response.status_code == 413
        assert response.headers["access-control-allow-origin"] == PAGE


def test_another_origin_is_refused(client: TestClient) -> None:
    answer = preflight(client, "/expose", "POST", "content-type", origin=OTHER)
    assert answer["status"] == "400"
    assert "access-control-allow-origin" not in answer
    refused = client.options(
        "/expose",
        headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"},
    ).json()["error"]
    assert refused["code"] == "cors_refused"
    assert refused["field"] == "origin"
    assert "CORS_ORIGINS" in refused["message"]
    simple = client.get(DATAFILE, headers={"Origin": OTHER})
    assert simple.status_code == 200  # the browser, not the service, withholds it from the page
    assert "access-control-allow-origin" not in simple.headers


def test_unlisted_headers_and_methods_are_refused(client: TestClient) -> None:
    for method, headers, field in (
        ("POST", "content-type,x-secret", "headers"),
        ("TRACE", None, "method"),
    ):
        answer = client.options(
            "/expose",
            headers={
                "Origin": PAGE,
                "Access-Control-Request-Method": method,
                **({"Access-Control-Request-Headers": headers} if headers else {}),
            },
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == field


def test_a_star_allows_every_origin(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins="*") as open_client:
        answer = preflight(open_client, OFREP, "POST", "content-type", origin=OTHER)
        assert (answer["status"], answer["access-control-allow-origin"]) == ("200", "*")
        response = open_client.get(DATAFILE, headers={"Origin": OTHER})
        assert response.headers["access-control-allow-origin"] == "*"


def test_without_cors_origins_nothing_changes(tmp_path: Path) -> None:
    with make_client(tmp_path) as plain:
        answer = preflight(plain, "/expose", "POST", "content-type")
        assert answer["status"] == "405"  # no preflight answer: the browser blocks the call
        assert "access-control-allow-origin" not in answer
        response = plain.get(DATAFILE, headers={"Origin": PAGE})
        assert response.status_code == 200
        assert not any(h.startswith("access-control-") for h in response.headers)
