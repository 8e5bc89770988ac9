"""A Redis no connection can be made to (none started, a mistyped host or port) is a
``StoreUnavailableError`` that says what to check, from the store, the budget and the
command line alike: redis-py's "Error 111 connecting to ..." left it to the reader.
A connection Redis closed, or a full pool, gets no such hint: Redis was reached."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from redis import exceptions
from redis.asyncio import Redis

from gptunnel_async.cli import main
from gptunnel_async.fleet import RedisBudget, RedisStore, StoreUnavailableError, Watcher
from gptunnel_async.fleet._errors import store_call
from gptunnel_async.testing import FakeGPTunnel

HINT = "is Redis running there, and is the address in the client's URL its own?"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: one the system just handed out, closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REDIS_FAILURES = {
    "refused": (exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Refused."), True),
    "no such name": (exceptions.ConnectionError("Error -2 connecting to redis:6379. Name."), True),
    "closed by Redis": (exceptions.ConnectionError("Connection closed by server."), False),
    "pool full": (exceptions.ConnectionError("Too many connections"), False),
    "timeout": (exceptions.TimeoutError("Timeout reading from socket"), False),
}


@pytest.mark.parametrize("kind", sorted(REDIS_FAILURES))
async def test_only_a_connection_never_made_gets_the_hint(kind: str) -> None:
    failure, hinted = REDIS_FAILURES[kind]
    with pytest.raises(StoreUnavailableError) as caught:
        async with store_call("reading"):
            raise failure
    assert (HINT in str(caught.value)) is hinted


async def test_the_store_budget_and_watcher_say_what_to_check(closed_port: int) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{closed_port}/0", socket_timeout=5)
    try:
        with FakeGPTunnel() as fake:
            async with fake.client() as client:
                calls = [
                    RedisStore(redis, name="bot").status(),
                    RedisBudget(redis, requests_per_second=5, name="bot").acquire(),
                    Watcher(client, RedisStore(redis, name="bot")).watch("t-1"),
                ]
                for call in calls:
                    with pytest.raises(StoreUnavailableError) as caught:
                        await call
                    assert HINT in str(caught.value)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("scheme", ["redis", "unix"])
def test_fleet_status_says_what_to_check(
    scheme: str, closed_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = {
        "redis": f"redis://127.0.0.1:{closed_port}/0",
        "unix": f"unix://{tmp_path}/no-redis.sock",
    }[scheme]
    assert main(["fleet", "status", "--redis", url, "--name", "bot"]) == 4
    assert HINT in capsys.readouterr().err
