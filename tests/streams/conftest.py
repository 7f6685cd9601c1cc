"""Fixtures of the stream tests: a fresh stream on the real NATS server (127.0.0.1:4222) or
Redis, and a service on a fresh Redis store. Without a server the tests skip with the reason;
under CI=true they fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import abpilot
from abpilot.service import ExperimentService
from tests.conftest import REDIS_URL, _server_missing, redis_prefix
from tests.streams.workload import NATS_URL, NatsBus, RedisBus

Bus = NatsBus | RedisBus


def nats_reachable() -> None:
    import nats

    async def ping() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(ping())
    except Exception as error:
        _server_missing("NATS JetStream", error)


@pytest.fixture(params=["nats", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "nats":
        nats_reachable()
        found: Bus = NatsBus()
    else:
        with redis_prefix():  # skips (or fails under CI) without Redis
            pass
        found = RedisBus()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def store_prefix() -> Iterator[str]:
    with redis_prefix() as prefix:
        yield prefix


@pytest.fixture
def service(store_prefix: str) -> Iterator[ExperimentService]:
    opened = abpilot.open(REDIS_URL, prefix=store_prefix)
    try:
        yield opened
    finally:
        opened.close()
