"""The store's share of a Redis client's connections: bursts wait their turn.

redis-py's ``ConnectionPool`` fails a command at once when ``max_connections`` are in
use; the store's commands take at most half the pool and queue for it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from gptunnel_async import GPTunnelClient, MediaTask, PollPolicy, Task
from gptunnel_async.errors import ConfigurationError, StoreUnavailableError
from gptunnel_async.fleet import (
    Delivery,
    FleetProgress,
    RedisBudget,
    RedisStore,
    Watcher,
    _connections,
)
from gptunnel_async.fleet._connections import Slots, share_of
from gptunnel_async.fleet._errors import is_connection_lost
from gptunnel_async.fleet._records import Outcome, WatchRecord
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
    ("client", "slots"),
    [
        (Redis(), (25, 25, 25)),  # redis-py 8.1's default pool: 100 connections
        (Redis(max_connections=10), (2, 2, 2)),
        (Redis(max_connections=3), (1, 1, 1)),
        (Redis(max_connections=2**31), (2**29, 2**29, 2**29)),  # redis-py 5's default
        (_pooled(BlockingConnectionPool(max_connections=10)), (2, 2, 2)),
        (RedisCluster(host="127.0.0.1", port=1, max_connections=8), (2, 2, 2)),  # per node
    ],
    ids=["default", "ten", "three", "redis-py-5", "blocking", "cluster"],
)
def test_commands_blocking_reads_and_listeners_get_a_quarter_of_the_pool_each(
    client: Any, slots: tuple[int, int, int]
) -> None:
    share = share_of(client)
    limits = share.commands.limit, share.blocking_reads.limit, share.listeners.limit
    assert limits == slots


class _Alike:
    """A client alike (``async_redis`` accepts it) whose pool is not redis-py's."""

    def __init__(self) -> None:
        self.connection_pool = None
        self.connection_kwargs = {"max_connections": "many"}


@pytest.mark.parametrize("client", [_Alike(), object()], ids=["odd-limit", "no-pool"])
def test_a_client_with_no_usable_limit_gets_no_bound(client: Any) -> None:
    share = share_of(client)
    limits = share.commands.limit, share.blocking_reads.limit, share.listeners.limit
    assert limits == (None, None, None)


@pytest.mark.parametrize("size", [1, 2])
def test_a_store_on_a_pool_of_under_three_connections_is_refused(size: int) -> None:
    with pytest.raises(ConfigurationError, match=rf"max_connections={size}\): the fleet needs"):
        RedisStore(Redis(max_connections=size))


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


@pytest.mark.parametrize(
    ("max_connections", "fleets", "pool"),
    [
        (3, 1, ConnectionPool),
        (4, 1, ConnectionPool),
        (10, 5, ConnectionPool),
        (4, 3, BlockingConnectionPool),
    ],
)
async def test_a_burst_of_results_succeeds_on_a_small_pool(
    fake: FakeGPTunnel,
    redis_url: str,
    max_connections: int,
    fleets: int,
    pool: type[ConnectionPool],
) -> None:
    """The user's case: a web service awaits many results at once, on a client whose
    pool is smaller than the burst (300 results failed on redis-py's default pool).
    Every worker's blocking read, listener and budget on the client count: left out,
    they filled a pool of two, or of ten under five fleets, and the take loops won the
    pool over the commands, a blocking pool's too."""
    redis = _pooled(pool.from_url(redis_url, max_connections=max_connections))
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
    await redis.connection_pool.disconnect()
    assert [task.id for task in tasks] == [i for name in names for i in task_ids[name]]
    assert all(task.is_done for task in tasks)


async def _results_by_a_watcher_each(
    client: GPTunnelClient,
    redis: Redis,
    name: str,
    task_ids: list[str],
    *,
    meanwhile: Awaitable[Any] | None = None,
) -> list[Task | MediaTask]:
    """Each task's result awaited by a watcher of its own (a web request's, without
    loops), while a worker of the fleet ``name`` watches them all and ``meanwhile``
    is awaited too."""
    readers = [Watcher(client, RedisStore(redis, name=name)) for _ in task_ids]
    waiting = [
        asyncio.create_task(reader.result(task_id, timeout=20))
        for reader, task_id in zip(readers, task_ids, strict=True)
    ]
    async with Watcher(client, RedisStore(redis, name=name)) as worker:
        await asyncio.gather(*(worker.watch(task_id) for task_id in task_ids))
        tasks = await asyncio.gather(*waiting)
        if meanwhile is not None:
            await asyncio.wait_for(meanwhile, 15)
    for reader in readers:
        await reader.close()
    return tasks


async def test_a_watcher_per_request_gets_its_result_though_few_may_listen(
    fake: FakeGPTunnel, redis_url: str
) -> None:
    """Each watcher awaiting a result listens for notices on a connection of its own,
    outside any bound: 30 of them at once on a pool of ten failed every call. Listeners
    take turns at their slots; those waiting read the store every second meanwhile."""
    redis = Redis.from_url(redis_url, max_connections=10)
    name = f"per-request-{next(_names)}"
    task_ids = [fake.script_task(steps=[("running", 50), ("done", 100)]) for _ in range(30)]
    async with fake.client(poll_policy=FAST) as client:
        tasks = await _results_by_a_watcher_each(client, redis, name, task_ids)
    await redis.aclose()
    assert [task.id for task in tasks] == task_ids
    assert all(task.is_done for task in tasks)


async def test_a_take_finding_every_blocking_slot_taken_reads_without_blocking(
    fake: FakeGPTunnel, redis_url: str
) -> None:
    """Past the pool's blocking-read slots (many idle watchers on one client), a worker
    waited its turn behind every other's half-second read: 40 watchers on the default
    pool delivered in 1.1 s (median) instead of 4 ms."""
    redis = Redis.from_url(redis_url, max_connections=4)  # one slot of each kind
    store = RedisStore(redis, name=f"takes-{next(_names)}")
    async with (
        fake.client(poll_policy=FAST) as client,
        Watcher(client, store) as worker,  # no handler: it takes nothing
    ):
        await worker.watch(task_id := fake.script_task(steps=[("done", 100)]))
        await asyncio.wait_for(worker.result(task_id), 15)
    occupied, release = asyncio.Event(), asyncio.Event()

    async def hold_the_slot() -> None:  # another watcher's blocking read, for as long
        async with share_of(redis).blocking_reads.held():
            occupied.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_slot())
    await occupied.wait()
    try:
        async with asyncio.timeout(5):  # it would wait for the slot, held until released
            (entry,) = await store.take("w", 10, 0.5, 60)
    finally:
        release.set()
        await holder
        await redis.aclose()
    assert entry.task_id == task_id


async def test_listeners_past_their_slots_are_said_once_and_results_still_come(
    fake: FakeGPTunnel, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gptunnel_async.fleet")
    redis = Redis.from_url(redis_url, max_connections=4)  # one listener slot
    name = f"listeners-{next(_names)}"
    task_ids = [fake.script_task(steps=[("running", 50), ("done", 100)]) for _ in range(3)]
    async with fake.client(poll_policy=FAST) as client:
        dashboard = Watcher(client, RedisStore(redis, name=name))
        progress = dashboard.progress()
        watching = asyncio.create_task(anext(progress))  # holds the one listener slot
        await asyncio.sleep(0.2)
        tasks = await _results_by_a_watcher_each(client, redis, name, task_ids, meanwhile=watching)
        await progress.aclose()
        await dashboard.close()
    await redis.aclose()
    assert all(task.is_done for task in tasks)
    said = [r for r in caplog.records if "waits for one of the 1 listener slots" in r.message]
    assert len(said) == 1  # once a pool, not once a waiting listener


@pytest.mark.parametrize("held", [0.5, 2.0], ids=["briefly", "past-the-wait"])
async def test_a_pool_the_application_fills_is_waited_for_then_a_store_error_that_says_so(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, held: float
) -> None:
    monkeypatch.setattr(_connections, "POOL_WAIT", 1.0)
    crowded = Redis.from_url(redis_url, max_connections=3)
    holding = [crowded.blpop([f"nothing-{n}"], timeout=held) for n in range(2)]
    holding_tasks = [asyncio.create_task(blpop) for blpop in holding]
    store = RedisStore(crowded, name=f"full-{next(_names)}")
    blocking = asyncio.create_task(crowded.blpop(["nothing-comes"], timeout=held))
    await asyncio.sleep(0.1)  # the application's blocking reads hold all three
    try:
        if held < 1.0:
            assert await store.outcome("task-1") is None  # it waited for the connection
            return
        with pytest.raises(StoreUnavailableError) as raised:
            await store.outcome("task-1")
    finally:
        for task in (blocking, *holding_tasks):
            task.cancel()
        await asyncio.gather(blocking, *holding_tasks, return_exceptions=True)
        await crowded.aclose()
    text = str(raised.value)
    assert "Too many connections" in text
    assert "max_connections" in text
    assert "BlockingConnectionPool" in text


async def test_commands_that_may_run_twice_ride_over_connections_redis_closed(
    redis: Redis, redis_url: str
) -> None:
    """After a Redis restart, a failover or an idle timeout, the first command on each
    pooled connection failed though Redis was up: a watch() after a paid create failed,
    and the task was never waited for."""
    app = Redis.from_url(redis_url, socket_timeout=5)  # the docs' recipe: no redis-py retry
    store = RedisStore(app, name=f"closed-{next(_names)}")
    budget = RedisBudget(app, 1000, name=f"closed-{next(_names)}")
    try:
        for _ in range(3):  # each round, every pooled connection closed by Redis first
            await asyncio.gather(*(store.status() for _ in range(4)))  # four pooled ones
            await redis.client_kill_filter(_type="normal", skipme=True)
            assert await store.watch(f"task-{next(_names)}", "{}", 60) is True
            assert await store.outcome("task-none") is None
            assert (await store.status()).watched >= 1
            assert await budget.acquire() > 0
    finally:
        await app.aclose()


async def test_a_read_saved_over_a_connection_redis_closed_is_not_left_to_its_lease(
    redis: Redis, redis_url: str
) -> None:
    """After a Redis restart, the first read of each task that a worker saved on a pooled
    connection Redis had closed failed, and the task waited out its lease (30 s) before
    any worker read it again; a hand-back on close was lost so too."""
    app = Redis.from_url(redis_url, socket_timeout=5)  # the docs' recipe: no redis-py retry
    store = RedisStore(app, name=f"closed-{next(_names)}")
    record = WatchRecord("faceswap", None, 60.0).dumps()
    try:
        for round_ in range(3):  # each round, every pooled connection closed by Redis first
            task_id = f"task-{round_}"
            assert await store.watch(task_id, record, 60)
            [claim], _ = await store.claim("w", 1, 30)
            assert claim.task_id == task_id
            await asyncio.gather(*(store.status() for _ in range(4)))  # four pooled ones
            await redis.client_kill_filter(_type="normal", skipme=True)
            assert await store.reschedule(task_id, "w", 0.0, "{}", None) is True
            # Saved and let go: due at once for any worker, not after the lease.
            [again], _ = await store.claim("other", 1, 30)
            assert again.task_id == task_id
            # Made twice (a reply lost after Redis ran it), the second does nothing.
            assert await store.reschedule(task_id, "w", 0.0, "{}", None) is False
            assert await store.finish(task_id, Outcome("done", None).dumps())
    finally:
        await app.aclose()


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (redis_errors.ConnectionError("Connection closed by server."), True),
        (redis_errors.ConnectionError("Connection reset by peer"), True),
        # Redis is down: another try fails alike (redis-py's text for a failed connect)
        (redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Refused."), False),
        (redis_errors.TimeoutError("Timeout reading from socket"), False),  # maybe stalled
        (redis_errors.MaxConnectionsError("Too many connections"), False),
        (redis_errors.ConnectionError("Too many connections"), False),  # redis-py before 6
        (redis_errors.ResponseError("NOPERM"), False),
        (OSError("reset"), False),
    ],
)
def test_only_a_lost_connection_is_made_again_for_a_command_that_may_run_twice(
    error: Exception, lost: bool
) -> None:
    assert is_connection_lost(error) is lost


async def test_a_redis_user_kept_off_the_channel_still_saves_reads_and_finishes_waits(
    redis: Redis, redis_url: str
) -> None:
    """Notices are best effort: Redis 7 gives a new ACL user no channel by default. The
    scripts failed after their writes, so a finished wait was reported as not finished."""
    user = f"fleet-{next(_names)}"
    await redis.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"]
    )  # and no channel: what "resetchannels" gives, Redis 7's default
    app = Redis.from_url(redis_url, username=user, password="secret")
    store = RedisStore(app, name=f"acl-{next(_names)}")
    try:
        for task_id in ("saved", "finished"):
            assert await store.watch(task_id, WatchRecord("faceswap", None, 60.0).dumps(), 60)
        claims, _ = await store.claim("w", 2, 30)
        assert sorted(claim.task_id for claim in claims) == ["finished", "saved"]
        progress = FleetProgress("saved", "running", 40, None).dumps()
        assert await store.reschedule("saved", "w", 5.0, "{}", progress) is True
        done = Outcome("done", Task(id="finished", status="done", percent=100))
        assert await store.finish("finished", done.dumps()) is True
        assert await store.outcome("finished") is not None
        assert (await store.status()).finished_unhandled == 1
    finally:
        await app.aclose()
        await redis.acl_deluser(user)
