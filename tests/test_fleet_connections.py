"""The store's share of a Redis client's connections: bursts wait their turn.

redis-py's ``ConnectionPool`` fails a command at once when ``max_connections`` are in
use; the store's commands take at most half the pool and queue for it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from gptunnel_async import PollPolicy
from gptunnel_async.errors import ConfigurationError, StoreUnavailableError
from gptunnel_async.fleet import Delivery, RedisBudget, RedisStore, Watcher, _connections
from gptunnel_async.fleet._connections import Slots, share_of
from gptunnel_async.testing import FakeGPTunnel

FAST = PollPolicy(initial=0.02, multiplier=1.5, max_interval=0.05, jitter=0.0)
_names = itertools.count()


class Handled:
    """A handler that counts what it was given."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.arrived = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.arrived.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.deliveries) < count:
                self.arrived.clear()
                await self.arrived.wait()


def _pooled(pool: ConnectionPool) -> Redis:
    return Redis(connection_pool=pool)


@pytest.mark.parametrize(
    ("client", "commands", "blocking_reads"),
    [
        (Redis(), 38, 12),  # redis-py 8.1's default pool: 100 connections
        (Redis(max_connections=10), 4, 1),
        (Redis(max_connections=3), 1, 1),
        (Redis(max_connections=1), 1, 1),
        (Redis(max_connections=2**31), 2**30 - 2**28, 2**28),  # redis-py 5's default
        (_pooled(BlockingConnectionPool(max_connections=10)), None, None),  # waits itself
        (RedisCluster(host="127.0.0.1", port=1, max_connections=8), 3, 1),  # per node
    ],
    ids=["default", "ten", "three", "one", "redis-py-5", "blocking", "cluster"],
)
def test_blocking_reads_get_an_eighth_of_the_pool_and_short_commands_the_rest_of_half(
    client: Any, commands: int | None, blocking_reads: int | None
) -> None:
    share = share_of(client)
    assert (share.commands.limit, share.blocking_reads.limit) == (commands, blocking_reads)


class _Alike:
    """A client alike (``async_redis`` accepts it) whose pool is not redis-py's."""

    def __init__(self) -> None:
        self.connection_pool = None
        self.connection_kwargs = {"max_connections": "many"}


@pytest.mark.parametrize("client", [_Alike(), object()], ids=["odd-limit", "no-pool"])
def test_a_client_with_no_usable_limit_gets_no_bound(client: Any) -> None:
    share = share_of(client)
    assert (share.commands.limit, share.blocking_reads.limit) == (None, None)


def test_a_store_on_a_pool_of_one_connection_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"max_connections=1\): a watcher's listener"):
        RedisStore(Redis(max_connections=1))
    RedisStore(Redis(max_connections=2))  # slow, but it works: see the bursts below


def test_stores_on_one_pool_share_one_share_and_other_pools_have_their_own() -> None:
    pool = ConnectionPool(max_connections=8)
    one, two, other = _pooled(pool), _pooled(pool), Redis(max_connections=8)
    assert share_of(one) is share_of(two)
    assert share_of(one) is not share_of(other)


async def test_a_share_holds_that_many_at_once_and_the_rest_wait_in_turn() -> None:
    share = Slots(2)
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


async def test_a_command_nested_in_one_that_holds_a_slot_runs_in_it() -> None:
    share = share_of(Redis(max_connections=3))
    async with asyncio.timeout(5), share.commands.held(), share.commands.held():  # no deadlock
        pass
    async with asyncio.timeout(5), share.blocking_reads.held(), share.commands.held():
        pass  # a blocking read's task reads what it got in the blocking read's slot


async def test_a_task_started_by_a_holder_waits_for_a_share_of_its_own() -> None:
    share = Slots(1)
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
    share = Slots(1)
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


@pytest.mark.parametrize(("max_connections", "fleets"), [(2, 1), (4, 1), (10, 5)])
async def test_a_burst_of_results_succeeds_on_a_small_pool(
    fake: FakeGPTunnel, redis_url: str, max_connections: int, fleets: int
) -> None:
    """The user's case: a web service awaits many results at once, on a client whose
    pool is smaller than the burst (300 results failed on redis-py's default pool).
    Every worker's blocking read and every budget on the client count: left out, they
    filled a pool of two, or of ten under five fleets, and the take loops won the pool
    over the commands."""
    redis = Redis.from_url(redis_url, max_connections=max_connections)
    names = [f"results-{next(_names)}" for _ in range(fleets)]
    budget = RedisBudget(redis, requests_per_second=1000, name=names[0])
    steps = [("running", 50), ("done", 100)]
    task_ids = {
        name: [fake.script_task(steps=steps) for _ in range(40 // fleets)] for name in names
    }
    handled = Handled()
    async with fake.client(poll_policy=FAST, budget=budget) as client:
        readers = [Watcher(client, RedisStore(redis, name=name)) for name in names]
        waiting = [
            asyncio.create_task(reader.result(task_id, timeout=30))
            for reader, name in zip(readers, names, strict=True)
            for task_id in task_ids[name]
        ]
        async with contextlib.AsyncExitStack() as workers:
            for name in names:
                worker = Watcher(client, RedisStore(redis, name=name), handler=handled)
                await workers.enter_async_context(worker)
                await asyncio.gather(*(worker.watch(task_id) for task_id in task_ids[name]))
            tasks = await asyncio.gather(*waiting)
            await handled.until(len(waiting))
        for reader in readers:
            await reader.close()
    await redis.aclose()
    assert [task.id for task in tasks] == [i for name in names for i in task_ids[name]]
    assert all(task.is_done for task in tasks)


@pytest.mark.parametrize("held", [0.5, 2.0], ids=["briefly", "past-the-wait"])
async def test_a_pool_the_application_fills_is_waited_for_then_a_store_error_that_says_so(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, held: float
) -> None:
    monkeypatch.setattr(_connections, "POOL_WAIT", 1.0)
    crowded = Redis.from_url(redis_url, max_connections=2)
    holding = asyncio.create_task(crowded.blpop(["nothing-either"], timeout=held))
    store = RedisStore(crowded, name=f"full-{next(_names)}")
    blocking = asyncio.create_task(crowded.blpop(["nothing-comes"], timeout=held))
    await asyncio.sleep(0.1)  # the application's blocking reads hold both connections
    try:
        if held < 1.0:
            assert await store.outcome("task-1") is None  # it waited for the connection
            return
        with pytest.raises(StoreUnavailableError) as raised:
            await store.outcome("task-1")
    finally:
        blocking.cancel()
        holding.cancel()
        await asyncio.gather(blocking, holding, return_exceptions=True)
        await crowded.aclose()
    text = str(raised.value)
    assert "Too many connections" in text
    assert "max_connections" in text
    assert "BlockingConnectionPool" in text
