"""A real ``redis-server`` on loopback for the tests, started by pytest-redis.

Without ``redis-server`` on the PATH the Redis tests are skipped with the reason, unless
``GPTUNNEL_REQUIRE_REDIS`` is set (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor
from redis.asyncio import Redis

REQUIRE_REDIS = "GPTUNNEL_REQUIRE_REDIS"

redis_server_proc = factories.redis_proc(
    executable=shutil.which("redis-server") or "/usr/bin/redis-server", host="127.0.0.1", port=None
)


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> RedisExecutor:
    """One ``redis-server`` for the session, on a free loopback port."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get(REQUIRE_REDIS):
            pytest.fail(f"{reason}, and {REQUIRE_REDIS} is set", pytrace=False)
        pytest.skip(reason)
    executor: RedisExecutor = request.getfixturevalue("redis_server_proc")
    return executor


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisExecutor) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/0"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test server, emptied before each test."""
    client = Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def redis_resp3(redis: Redis, redis_url: str) -> AsyncIterator[Redis]:
    """A RESP3 client (``protocol=3``) of the test server, emptied before each test:
    redis-py shapes some replies differently for it."""
    client = Redis.from_url(redis_url, protocol=3)
    yield client
    await client.aclose()
