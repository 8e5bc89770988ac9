"""The store's share of a Redis client's connections: bursts wait their turn.

redis-py's ``ConnectionPool`` fails a command at once when ``max_connections`` are in
use; the store's commands take at most half the pool and queue for it instead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from gptunnel_async import PollPolicy
from gptunnel_async.errors import StoreUnavailableError
from gptunnel_async.fleet import RedisStore, Watcher
from gptunnel_async.fleet._connections import CommandShare, share_of
from gptunnel_async.testing import FakeGPTunnel

FAST = PollPolicy(initial=0.02, multiplier=1.5, max_interval=0.05, jitter=0.0)
_names = itertools.count()


def _pooled(pool: ConnectionPool) -> Redis:
    return Redis(connection_pool=pool)


@pytest.mark.parametrize(
    ("client", "limit"),
    [
        (Redis(), 50),  # redis-py 8.1's default pool: 100 connections
        (Redis(max_connections=10), 5),
        (Redis(max_connections=3), 1),
        (Redis(max_connections=1), 1),
        (Redis(max_connections=2**31), 2**30),  # redis-py 5's default
        (_pooled(BlockingConnectionPool(max_connections=10)), None),  # waits by itself
        (RedisCluster(host="127.0.0.1", port=1, max_connections=8), 4),  # per node
    ],
    ids=["default", "ten", "three", "one", "redis-py-5", "blocking", "cluster"],
)
def test_the_share_is_half_of_the_pool_and_none_for_a_pool_that_waits(
    client: Any, limit: int | None
) -> None:
    assert share_of(client).limit == limit


class _Alike:
    """A client alike (``async_redis`` accepts it) whose pool is not redis-py's."""

    def __init__(self) -> None:
        self.connection_pool = None
        self.connection_kwargs = {"max_connections": "many"}


@pytest.mark.parametrize("client", [_Alike(), object()], ids=["odd-limit", "no-pool"])
def test_a_client_with_no_usable_limit_gets_no_bound(client: Any) -> None:
    assert share_of(client).limit is None


def test_stores_on_one_pool_share_one_share_and_other_pools_have_their_own() -> None:
    pool = ConnectionPool(max_connections=8)
    one, two, other = _pooled(pool), _pooled(pool), Redis(max_connections=8)
    assert share_of(one) is share_of(two)
    assert share_of(one) is not share_of(other)


async def test_a_share_holds_that_many_at_once_and_the_rest_wait_in_turn() -> None:
    share = CommandShare(2)
    inside, most, order = 0, 0, []

    async def command(number: int) -> None:
        nonlocal inside, most
        async with share.held():
            inside += 1
            most = max(most, inside)
            order.append(number)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(command(number) for number in range(10)))
    assert most == 2
    assert order == list(range(10))  # first come, first served


async def test_a_command_nested_in_one_that_holds_the_share_runs_in_it() -> None:
    share = CommandShare(1)
    async with asyncio.timeout(5), share.held(), share.held():  # not a deadlock
        pass


async def test_a_task_started_by_a_holder_waits_for_a_share_of_its_own() -> None:
    share = CommandShare(1)
    entered = asyncio.Event()

    async def child() -> None:
        async with share.held():
            entered.set()

    async with share.held():
        started = asyncio.create_task(child())  # inherits the holder's context
        await asyncio.sleep(0.05)
        assert not entered.is_set()
    await asyncio.wait_for(started, 5)
    assert entered.is_set()


async def test_a_share_is_made_again_for_another_event_loop() -> None:
    share = CommandShare(1)
    async with share.held():
        pass

    def elsewhere() -> None:
        async def twice() -> None:
            async def hold() -> None:
                async with share.held():
                    await asyncio.sleep(0.01)

            await asyncio.gather(hold(), hold())  # waits on the semaphore: on this loop

        asyncio.run(twice())

    await asyncio.to_thread(elsewhere)
    async with asyncio.timeout(5), share.held():
        pass


@pytest.fixture
async def small_pool(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test server whose pool holds four connections."""
    client = Redis.from_url(redis_url, max_connections=4)
    yield client
    await client.aclose()


async def _connected_clients(redis: Redis) -> int:
    info = await redis.info("clients")
    return int(info["connected_clients"])


async def test_a_burst_of_store_commands_waits_for_connections_rather_than_failing(
    redis: Redis, small_pool: Redis
) -> None:
    store = RedisStore(small_pool, name=f"burst-{next(_names)}")
    before = await _connected_clients(redis)
    registered = await asyncio.gather(
        *(store.watch(f"task-{number}", "{}", 60) for number in range(200))
    )
    outcomes = await asyncio.gather(*(store.outcome(f"task-{number}") for number in range(200)))
    assert all(registered)
    assert outcomes == [None] * 200
    assert await _connected_clients(redis) - before <= 2  # half the pool of four


async def test_a_burst_of_results_succeeds_on_a_small_pool(
    fake: FakeGPTunnel, small_pool: Redis
) -> None:
    """The user's case: a web service awaits many results at once, on a client whose
    pool is smaller than the burst (300 results failed on redis-py's default pool)."""
    name = f"results-{next(_names)}"
    task_ids = [fake.script_task(steps=[("running", 50), ("done", 100)]) for _ in range(60)]
    async with fake.client(poll_policy=FAST) as client:
        reader = Watcher(client, RedisStore(small_pool, name=name))
        waiting = [asyncio.create_task(reader.result(task_id, timeout=30)) for task_id in task_ids]
        async with Watcher(client, RedisStore(small_pool, name=name), worker="poller") as poller:
            registered = await asyncio.gather(*(poller.watch(task_id) for task_id in task_ids))
            tasks = await asyncio.gather(*waiting)
        await reader.close()
    assert all(registered)
    assert [task.id for task in tasks] == task_ids
    assert all(task.is_done for task in tasks)


async def test_a_pool_the_application_filled_is_a_store_error_that_says_what_to_do(
    redis: Redis, redis_url: str
) -> None:
    crowded = Redis.from_url(redis_url, max_connections=1)
    store = RedisStore(crowded, name=f"full-{next(_names)}")
    blocking = asyncio.create_task(crowded.blpop(["nothing-comes"], timeout=2))
    await asyncio.sleep(0.1)  # the application's blocking read holds the only connection
    try:
        with pytest.raises(StoreUnavailableError) as raised:
            await store.outcome("task-1")
    finally:
        blocking.cancel()
        await asyncio.gather(blocking, return_exceptions=True)
        await crowded.aclose()
    text = str(raised.value)
    assert "Too many connections" in text
    assert "max_connections" in text
    assert "BlockingConnectionPool" in text
