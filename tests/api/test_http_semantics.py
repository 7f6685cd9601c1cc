"""RFC 9110 on every route: HEAD answers as GET without a body, a 405 says which methods are
allowed, a 401 carries a challenge, and If-None-Match (``*``, weak tags, lists) gives a 304."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from abpilot.api import create_app
from abpilot.api.http_semantics import none_match
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.api.conftest import API, running
from tests.api.datafile_sample import PATH, write_datafiles

DATAFILE = f"/datafile/{PATH}"
CHALLENGE = 'Bearer realm="abpilot"'


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        store="memory",
        scheduler_enabled=False,
        datafiles_dir=write_datafiles(tmp_path / "datafiles"),
    )
    with TestClient(create_app(settings, store=MemoryStore())) as test_client:
        running(test_client)
        yield test_client


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        store="memory",
        scheduler_enabled=False,
        api_keys="admin:adm-key,write:wr-key",
        datafiles_dir=write_datafiles(tmp_path / "datafiles"),
    )
    with TestClient(create_app(settings, store=MemoryStore())) as test_client:
        yield test_client


def raw_body(client: TestClient, method: str, path: str) -> tuple[int, bytes]:
    """The status and every body byte the app sends, read at the ASGI level (an HTTP client
    would drop a HEAD answer's body itself, hiding a body the app wrongly sent)."""
    sent: list[dict[str, Any]] = []
    requested = False
    done = anyio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    async def call() -> None:
        await client.app(scope, receive, send)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    assert client.portal is not None
    client.portal.call(call)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# --- HEAD


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/experiments",
        f"{API}/experiments/button",
        f"{API}/experiments/button/analysis",
        DATAFILE,
        "/stats",
        "/healthz",
        "/dashboard",
        "/dashboard/static/dashboard.css",
        "/openapi.json",
    ],
)
def test_head_answers_as_get_without_a_body(client: TestClient, path: str) -> None:
    get = client.get(path)
    head = client.head(path)
    assert get.status_code == 200, get.text
    assert head.status_code == 200
    for header in ("content-type", "content-length", "etag", "cache-control"):
        assert head.headers.get(header) == get.headers.get(header), header
    assert int(head.headers["content-length"]) == len(get.content) > 0
    status, body = raw_body(client, "HEAD", path)
    assert (status, body) == (200, b"")


def test_head_of_an_unknown_resource_is_the_get_answer(client: TestClient) -> None:
    for path in (f"{API}/experiments/nope", "/datafile/production/nope.json"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 404
        assert head.headers["content-length"] == get.headers["content-length"]
        assert raw_body(client, "HEAD", path) == (404, b"")


def test_head_with_if_none_match_is_304_like_get(client: TestClient) -> None:
    etag = client.get(DATAFILE).headers["etag"]
    head = client.head(DATAFILE, headers={"If-None-Match": etag})
    assert (head.status_code, head.headers["etag"]) == (304, etag)


def test_head_needs_the_same_key_as_get(closed: TestClient) -> None:
    assert closed.head(f"{API}/experiments").status_code == 401
    assert closed.head(f"{API}/experiments", headers={"X-API-Key": "wr-key"}).status_code == 200


# --- 405 and Allow


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", f"{API}/experiments/button", "GET, HEAD, PATCH, DELETE"),
        ("DELETE", f"{API}/experiments", "GET, HEAD, POST"),
        ("GET", f"{API}/experiments/button/assign", "POST"),
        ("HEAD", "/expose", "POST"),
        ("PUT", "/ofrep/v1/evaluate/flags", "POST"),
        ("POST", DATAFILE, "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/dashboard/static/dashboard.css", "GET, HEAD"),
    ],
)
def test_a_405_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert response.json()["error"]["code"] == "method_not_allowed"


# --- 401 and WWW-Authenticate


def test_a_401_carries_a_bearer_challenge(closed: TestClient) -> None:
    for method, path, headers in (
        ("GET", f"{API}/experiments", {}),
        ("GET", f"{API}/experiments", {"Authorization": "Bearer wrong"}),
        ("POST", "/expose", {"X-API-Key": "wrong"}),
        ("POST", "/ofrep/v1/evaluate/flags", {}),
    ):
        response = closed.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == CHALLENGE
        assert response.json()["error"]["code"] == "unauthorized"


def test_a_403_or_a_200_carries_no_challenge(closed: TestClient) -> None:
    forbidden = closed.delete(f"{API}/experiments/button", headers={"X-API-Key": "wr-key"})
    assert forbidden.status_code == 403
    assert "www-authenticate" not in forbidden.headers
    assert "www-authenticate" not in closed.get("/healthz").headers


# --- If-None-Match


def test_if_none_match_on_a_datafile(client: TestClient) -> None:
    first = client.get(DATAFILE)
    etag = first.headers["etag"]
    for header in ("*", etag, f"W/{etag}", f'"other", {etag}', f'W/"x",W/{etag}'):
        again = client.get(DATAFILE, headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
    for header in ('"other"', f'"{etag}"', etag.strip('"'), ""):
        again = client.get(DATAFILE, headers={"If-None-Match": header})
        assert (again.status_code, again.content) == (200, first.content), header


def test_if_none_match_star_on_a_missing_datafile_is_404(client: TestClient) -> None:
    response = client.get("/datafile/production/nope.json", headers={"If-None-Match": "*"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("header", "etag", "matches"),
    [
        (None, '"a"', False),
        ("", '"a"', False),
        ("*", '"a"', True),
        (" * ", '"a"', True),
        ('"a"', '"a"', True),
        ('W/"a"', '"a"', True),
        ('"a"', 'W/"a"', True),
        ('"b", "a"', '"a"', True),
        ('"b",W/"a"', '"a"', True),
        ('"a,b"', '"a,b"', True),  # a comma may be part of a tag
        ('"a,b"', '"a"', False),
        ('"b"', '"a"', False),
        ("a", '"a"', False),  # not a tag: unquoted
        ('"ab"', '"a"', False),
        ('"*"', '"a"', False),
    ],
)
def test_none_match_follows_rfc_9110(header: str | None, etag: str, matches: bool) -> None:
    assert none_match(header, etag) is matches
