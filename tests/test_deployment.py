"""The deployment files are well-formed and keep their promises (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def test_dockerfile_runs_as_a_user_with_a_readiness_check() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert any(line.startswith("USER abpilot") for line in lines)
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "--interval" in health
    assert any("/readyz" in line for line in lines)
    # On the port the server listens on (PORT=5050 keeps FeatureVisor Pilot's port).
    assert any("127.0.0.1:${PORT:-8000}/readyz" in line for line in lines)
    cmd = next(line for line in lines if line.startswith("CMD"))
    assert "abpilot db upgrade" in cmd
    assert "--workers" in cmd


def test_compose_has_the_service_postgres_and_a_durable_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"abpilot", "postgres", "redis"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--requirepass" in redis_command
    assert "--appendonly yes" in redis_command
    env = services["abpilot"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert set(services["abpilot"]["depends_on"]) == {"postgres", "redis"}
