"""README § Intake from an event stream, run as printed: `abpilot consume nats redis` on the
test's Redis store, two events added with redis-cli (one for a misspelt experiment), a conversion
published to NATS from Python, then the dead letters and `abpilot replay` (its printed output
compared). The streams are the test's own (``NATS_STREAM``, ``REDIS_STREAM``, ... in the
environment, as the block's shell would have them), deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import abpilot
from abpilot.service import ExperimentService
from tests.conftest import REDIS_URL, redis_prefix
from tests.e2e import readme_blocks
from tests.e2e.readme_blocks import background, block_env, on_store, run, wait_until
from tests.e2e.test_readme import PRINTED_REDIS_URL, claims, readme
from tests.streams.conftest import nats_reachable
from tests.streams.workload import NatsBus

HEADING = "Intake from an event stream"


@pytest.fixture
def streams() -> Iterator[dict[str, str]]:
    """The test's own NATS and Redis streams, as environment variables."""
    nats_reachable()
    nats_bus = NatsBus()
    tag = uuid.uuid4().hex[:10]
    names = {
        **{k: v for k, v in nats_bus.settings.items() if k.startswith("NATS_")},
        "REDIS_STREAM": f"abptest-readme-{tag}",
        "REDIS_STREAM_DEAD_LETTER": f"abptest-readme-{tag}:dead",
    }
    try:
        yield names
    finally:
        nats_bus.close()
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(names["REDIS_STREAM"], names["REDIS_STREAM_DEAD_LETTER"])
        client.close()


def counted(service: ExperimentService) -> tuple[int, int]:
    variants = service.get_metrics("checkout-button").variants
    return sum(v.exposures for v in variants), sum(v.metrics["conversion"].count for v in variants)


@claims(*(f"README.md § {HEADING} #{i}" for i in range(4)))
def test_stream_intake_as_the_readme_shows(streams: dict[str, str], tmp_path: Path) -> None:
    with redis_prefix() as prefix:
        service = abpilot.open(REDIS_URL, prefix=prefix)
        service.create_experiment(
            key="checkout-button",
            variants=[{"key": "control"}, {"key": "green"}],
            metrics=[{"key": "conversion"}, {"key": "revenue", "kind": "value"}],
        )
        service.start_experiment("checkout-button")
        env = block_env(tmp_path, REDIS_PREFIX=prefix, **streams)
        consume = on_store(readme(HEADING, 0), PRINTED_REDIS_URL, REDIS_URL)
        with background(consume, cwd=tmp_path, env=env) as process:

            def log() -> str:
                return readme_blocks.log_of(consume, tmp_path)

            wait_until(lambda: log().count("consuming") == 2, process, "both consumers", log)
            run(readme(HEADING, 1), cwd=tmp_path, env=env)
            wait_until(lambda: counted(service) == (1, 0), process, "the exposure counted", log)
            run(readme(HEADING, 2), cwd=tmp_path, env=env)
            wait_until(lambda: counted(service) == (1, 1), process, "the conversion counted", log)
            dead = redis.Redis.from_url(REDIS_URL)
            try:
                wait_until(
                    lambda: dead.xlen(streams["REDIS_STREAM_DEAD_LETTER"]) == 1,
                    process,
                    "the dead letter",
                    log,
                )
            finally:
                dead.close()
        replay = readme(HEADING, 3)
        shell = {**env, "STORE": "redis", "REDIS_URL": REDIS_URL}  # as block #0 exported
        result = run(replay, cwd=tmp_path, env=shell)
        assert "no experiment with id or key 'checkout-buton'" in result.stdout
        assert readme_blocks.assert_output_comments(replay, result.stdout) == 1
        assert counted(service) == (1, 1)
        service.close()
