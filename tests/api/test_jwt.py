"""JWTs must expire (unless JWT_REQUIRE_EXP=false), JWT_SECRET must be long enough to resist
brute force, and secrets in the settings do not show in reprs or error messages."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
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

SECRET = "a-jwt-secret-of-exactly-32-bytes"
assert len(SECRET.encode()) == 32


def token(secret: str = SECRET, **claims: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


def in_a_minute() -> int:
    return int(time.time()) + 60


def not_started(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("serve went on to start the server")


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(store="memory", scheduler_enabled=False, jwt_secret=SECRET)
    with TestClient(create_app(settings, store=MemoryStore())) as test_client:
        yield test_client


def test_a_token_without_exp_is_refused(client: TestClient) -> None:
    assert client.get(f"{API}/experiments", headers=token(role="admin")).status_code == 401
    valid = token(role="read", exp=in_a_minute())
    assert client.get(f"{API}/experiments", headers=valid).status_code == 200
    expired = token(role="read", exp=int(time.time()) - 60)
    assert client.get(f"{API}/experiments", headers=expired).status_code == 401


def test_jwt_require_exp_false_accepts_tokens_without_exp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWT_REQUIRE_EXP", "false")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    settings = Settings(store="memory", scheduler_enabled=False)
    assert settings.jwt_require_exp is False
    with TestClient(create_app(settings, store=MemoryStore())) as relaxed:
        assert relaxed.get(f"{API}/experiments", headers=token(role="read")).status_code == 200
        expired = token(role="read", exp=int(time.time()) - 60)
        assert relaxed.get(f"{API}/experiments", headers=expired).status_code == 401


@pytest.mark.parametrize("secret", ["tiny-secret", "s" * 31, "é" * 15])  # "é" is 2 bytes: 30 bytes
def test_a_short_secret_is_refused(secret: str) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings(jwt_secret=secret)
    message = str(raised.value)
    assert f"JWT_SECRET must be at least 32 bytes (got {len(secret.encode())})" in message
    assert secret not in message.replace("JWT_SECRET", "")  # the value is not echoed


def test_a_32_byte_secret_is_accepted_and_empty_means_unset() -> None:
    assert Settings(jwt_secret="é" * 16).jwt_secret is not None
    assert Settings(jwt_secret="").jwt_secret is None


def test_serve_stops_on_a_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "changeme")
    monkeypatch.setenv("STORE", "memory")
    monkeypatch.setattr(uvicorn, "run", not_started)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2  # a message, not a traceback
    assert "JWT_SECRET must be at least 32 bytes" in " ".join(result.output.split())
    assert "changeme" not in result.output


def test_secrets_do_not_show_in_reprs() -> None:
    settings = Settings(
        jwt_secret=SECRET,
        api_keys="admin:an-admin-key",
        redis_password="p@ss:word",
    )
    app = create_app(settings, store=MemoryStore())
    for text in (repr(settings), str(settings), repr(app.state.auth)):
        for secret in (SECRET, "an-admin-key", "p@ss:word"):
            assert secret not in text
    assert settings.resolved_redis_url() == "redis://:p%40ss%3Aword@127.0.0.1:6379/0"
