"""API keys and JWTs with roles: who may read, write and manage."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from abpilot.api import create_app
from abpilot.api.auth import WRITE_ROUTES, AuthConfigError, Role, hash_key, required_role
from abpilot.cli import app as cli
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.api.conftest import API, experiment_body

SECRET = "jwt-secret-for-tests-0123456789abcdef"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(
        store="memory",
        scheduler_enabled=False,
        api_keys=f"admin:adm-key, write:wr-key, read:sha256:{hash_key('rd-key')}",
        jwt_secret=SECRET,
    )
    with TestClient(create_app(settings, store=MemoryStore())) as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def start(client: TestClient) -> None:
    admin = bearer("adm-key")
    assert (
        client.post(f"{API}/experiments", json=experiment_body(), headers=admin).status_code == 201
    )
    started = client.put(
        f"{API}/experiments/button/status", json={"status": "running"}, headers=admin
    )
    assert started.status_code == 200


def test_a_missing_or_wrong_key_gets_401(client: TestClient) -> None:
    for headers in ({}, bearer("nope"), {"X-API-Key": "nope"}):
        response = client.get(f"{API}/experiments", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert client.get("/healthz").status_code == 200  # public
    assert client.get("/openapi.json").status_code == 200


def test_read_can_read_but_not_write(client: TestClient) -> None:
    start(client)
    read = {"X-API-Key": "rd-key"}  # configured hashed at rest
    assert client.get(f"{API}/experiments/button/metrics", headers=read).status_code == 200
    assign = client.post(f"{API}/experiments/button/assign", json={"unit_id": "u"}, headers=read)
    assert assign.status_code == 403
    assert "needs the write role" in assign.json()["error"]["message"]


def test_write_can_send_data_but_not_manage(client: TestClient) -> None:
    start(client)
    write = bearer("wr-key")
    assign = client.post(f"{API}/experiments/button/assign", json={"unit_id": "u"}, headers=write)
    assert assign.status_code == 200
    exposure = client.post(
        f"{API}/experiments/button/exposures", json={"unit_id": "u"}, headers=write
    )
    assert exposure.status_code == 200
    assert client.get(f"{API}/experiments/button", headers=write).status_code == 200
    for method, path, body in (
        ("post", f"{API}/experiments", experiment_body("other")),
        ("put", f"{API}/experiments/button/status", {"status": "paused"}),
        ("patch", f"{API}/experiments/button", {"name": "x"}),
        ("delete", f"{API}/experiments/button", None),
        ("post", f"{API}/recalculate", None),
        ("post", "/recalculate", None),
    ):
        response = client.request(method, path, json=body, headers=write)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "forbidden"
    # Nothing changed.
    assert client.get(f"{API}/experiments/button", headers=write).json()["status"] == "running"


def test_jwt_roles(client: TestClient) -> None:
    start(client)
    token = jwt.encode({"role": "write", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    ok = client.post(
        f"{API}/experiments/button/assign", json={"unit_id": "u"}, headers=bearer(token)
    )
    assert ok.status_code == 200
    expired = jwt.encode({"role": "admin", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    forged = jwt.encode(
        {"role": "admin"}, "another-secret-of-the-same-length-00", algorithm="HS256"
    )
    for bad in (expired, forged):
        assert client.get(f"{API}/experiments", headers=bearer(bad)).status_code == 401
    reader = jwt.encode({"role": "read", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert client.delete(f"{API}/experiments/button", headers=bearer(reader)).status_code == 403


def test_every_write_route_exists_and_every_route_is_classified(client: TestClient) -> None:
    operations = client.get("/openapi.json").json()["paths"]
    assert set(operations) >= WRITE_ROUTES
    for path, methods in operations.items():
        for method in methods:
            role = required_role(method.upper(), path)
            if path.startswith("/api/v1") and method != "get":
                assert role in (Role.WRITE, Role.ADMIN), path


def test_bad_key_configuration_is_refused_at_start() -> None:
    for entry in ("boss:k", "admin:", "read:sha256:xyz"):
        with pytest.raises(AuthConfigError):
            create_app(Settings(store="memory", api_keys=entry), store=MemoryStore())


def test_keys_create_prints_a_key_that_works() -> None:
    result = CliRunner().invoke(cli, ["keys", "create", "--role", "write"])
    assert result.exit_code == 0, result.output
    key = result.output.split("key: ")[1].split()[0]
    entry = result.output.split("API_KEYS entry: ")[1].split()[0]
    settings = Settings(store="memory", scheduler_enabled=False, api_keys=entry)
    with TestClient(create_app(settings, store=MemoryStore())) as client:
        assert client.get(f"{API}/experiments", headers=bearer(key)).status_code == 200
        assert (
            client.post(
                f"{API}/experiments", json=experiment_body(), headers=bearer(key)
            ).status_code
            == 403
        )
    assert CliRunner().invoke(cli, ["keys", "create", "--role", "boss"]).exit_code == 2
