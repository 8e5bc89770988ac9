"""A Redis that refuses the client's login (no password given where one is needed, a
wrong one) is a ``StoreUnavailableError`` that says so and what to give, in the library
and in ``gptunnel-async fleet status``: redis-py's own words for it ("HELLO must be
called with the client already authenticated ...") named no password at all."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

import pytest
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor
from redis.asyncio import Redis

from gptunnel_async.cli import main
from gptunnel_async.fleet import RedisBudget, RedisStore, StoreUnavailableError, Watcher
from gptunnel_async.testing import FakeGPTunnel

PASSWORD = "fleet-pass-not-shown-7"


locked_redis_proc = factories.redis_proc(
    executable=shutil.which("redis-server") or "/usr/bin/redis-server",
    host="127.0.0.1",
    port=None,
    password=PASSWORD,
)


@pytest.fixture
def locked_redis(redis_server: RedisExecutor, request: pytest.FixtureRequest) -> int:
    """A ``redis-server`` of its own on loopback that asks for ``PASSWORD``: its port.
    (After ``redis_server``: without ``redis-server``, skipped or failed as the other
    Redis tests are.)"""
    executor: RedisExecutor = request.getfixturevalue("locked_redis_proc")
    return int(executor.port)


@pytest.mark.parametrize("userinfo", ["", ":wrong-password@", "someone:wrong-password@"])
@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_refused_login_says_what_to_give(
    locked_redis: int, userinfo: str, protocol: int
) -> None:
    redis = Redis.from_url(
        f"redis://{userinfo}127.0.0.1:{locked_redis}/0", socket_timeout=5, protocol=protocol
    )
    try:
        with pytest.raises(StoreUnavailableError) as store_error:
            await RedisStore(redis, name="bot").status()
        with pytest.raises(StoreUnavailableError) as budget_error:
            await RedisBudget(redis, requests_per_second=5, name="bot").acquire()
    finally:
        await redis.aclose()
    for error in (store_error.value, budget_error.value):
        assert "refused the client's login" in str(error), str(error)
        assert "redis://USER:PASSWORD@" in str(error)
        assert "wrong-password" not in str(error)


async def test_the_right_password_is_no_refusal(locked_redis: int) -> None:
    redis = Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{locked_redis}/0", socket_timeout=5)
    try:
        assert (await RedisStore(redis, name="bot").status()).watched == 0
    finally:
        await redis.aclose()


async def test_fleet_status_says_the_redis_wants_a_password(
    locked_redis: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{locked_redis}/0"
    code = await asyncio.to_thread(main, ["fleet", "status", "--redis", url])
    assert code == 4
    error = capsys.readouterr().err
    assert "refused the client's login" in error and "--redis" in error


async def test_a_worker_logs_the_refusal_whole(
    locked_redis: int, fake: FakeGPTunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """The loops log each failure on one line of at most 300 characters: the hint must
    fit in it, after redis-py's longest words for a refused login."""
    caplog.set_level(logging.WARNING, logger="gptunnel_async.fleet")
    redis = Redis.from_url(f"redis://127.0.0.1:{locked_redis}/0", socket_timeout=5, protocol=3)
    try:
        async with (
            fake.client() as client,
            Watcher(client, RedisStore(redis, name="bot"), handler=lambda delivery: None),
        ):
            deadline = time.monotonic() + 10
            while not any("refused the client's login" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "no worker logged the refused login"
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    for message in logged:  # the hint whole, and the loop's own words after it
        assert "redis://USER:PASSWORD@host:port/db; trying again in" in message, message
