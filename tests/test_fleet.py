"""The durable watcher, on the in-memory store and on a real redis-server, against the
emulator: delivery once per task, leases, redelivery, webhook fan-in, results anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gptunnel_async import (
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    MediaTask,
    NotFoundError,
    PollPolicy,
    ServerError,
    Task,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
    throttle,
)
from gptunnel_async.fleet import (
    Delivery,
    FleetProgress,
    InProcessBudget,
    MemoryStore,
    RedisBudget,
    RedisStore,
    StoreUnavailableError,
    Watcher,
    WatchStore,
    _redis_store,
)
from gptunnel_async.fleet._records import Outcome
from gptunnel_async.fleet._watcher import IDLE_POLL, INSTANT_IDLE_POLL, RECLAIM_MARGIN
from gptunnel_async.testing import FakeGPTunnel, instant_waits

FAST = PollPolicy(initial=0.02, multiplier=1.5, max_interval=0.05, jitter=0.0)
_names = itertools.count()

StoreFactory = Callable[[], WatchStore]


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    async with fake.client(poll_policy=FAST) as opened:
        yield opened


@pytest.fixture(params=["memory", "redis", "redis-resp3"])
def new_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Stores of one fleet: each call is another process's view of the same waits."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    redis: Redis = request.getfixturevalue(request.param.replace("-", "_"))
    name = f"fleet-{next(_names)}"
    return lambda: RedisStore(redis, name=name)


class Handled:
    """A handler that records what it was given, and can fail on demand."""

    def __init__(self, fail_times: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_times = fail_times
        self.arrived = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.arrived.set()
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("the handler broke")

    async def until(self, count: int) -> list[Delivery]:
        async with asyncio.timeout(15):
            while len(self.deliveries) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.deliveries


async def settle(condition: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    """Until ``condition()`` holds: the store has no push for it, so look every 20 ms."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _now(value: bool) -> bool:
    """A condition for :func:`settle` that needs no store."""
    return value


async def test_a_watched_task_is_delivered_once_with_its_metadata(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("queued", 0), ("running", 40), ("done", 100)])
    handled = Handled()
    async with (
        Watcher(client, new_store(), handler=handled, worker="a"),
        Watcher(client, new_store(), handler=handled, worker="b") as other,
    ):
        assert await other.watch(task_id, metadata={"chat_id": 42}) is True
        assert await other.watch(task_id, metadata={"chat_id": 0}) is False  # idempotent
        (delivery,) = await handled.until(1)
        await asyncio.sleep(0.3)  # time for a duplicate to show, were there one
    assert len(handled.deliveries) == 1
    assert delivery.task_id == task_id
    assert delivery.outcome == "done"
    assert delivery.metadata == {"chat_id": 42}
    assert delivery.family == "faceswap"
    assert delivery.task is not None and delivery.task.is_done
    assert delivery.redelivered is False
    assert (await new_store().status()).finished_unhandled == 0


async def test_result_returns_in_any_process_when_the_task_finishes(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("running", 10), ("running", 60), ("done", 100)])
    reader = Watcher(client, new_store())
    waiting = asyncio.create_task(reader.result(task_id))
    async with Watcher(client, new_store(), worker="poller") as poller:
        await poller.watch(task_id, family="faceswap")
        task = await asyncio.wait_for(waiting, 15)
    await reader.close()
    assert task.id == task_id
    assert task.is_done
    assert await reader.result(task_id) == task  # and again, once finished


async def test_a_failed_task_is_delivered_failed_and_result_raises(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.fail_task("no face found", steps=[("running", 10)])
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id)
        (delivery,) = await handled.until(1)
        with pytest.raises(TaskFailedError, match="no face found"):
            await watcher.result(task_id)
    assert delivery.outcome == "failed"
    assert delivery.task is not None and delivery.task.error == "no face found"


@pytest.mark.parametrize(("failed_clips", "outcome"), [(0, "done"), (1, "done"), (2, "failed")])
async def test_a_suno_task_is_delivered_as_its_clips_decide_with_its_clips_kept(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    failed_clips: int,
    outcome: str,
) -> None:
    """The stores keep a media task's clips: a done song came back with none, so it was
    neither done nor failed; every clip failed is a failure, as a wait's."""
    task_id = fake.script_task(
        steps=[("running", 0), ("done", 100)], model="suno", failed_clips=failed_clips
    )
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id, family="media")
        (delivery,) = await handled.until(1)
        if outcome == "failed":
            with pytest.raises(TaskFailedError, match="all 2 clips failed"):
                await watcher.result(task_id)
        else:
            assert await watcher.result(task_id) == delivery.task
    assert delivery.outcome == outcome
    assert isinstance(delivery.task, MediaTask) and len(delivery.task.clips) == 2
    assert len(delivery.task.failed_clips) == failed_clips
    assert delivery.task.is_done == (outcome == "done")


@pytest.mark.parametrize("fault", [None, 503], ids=["its reads succeed", "its later reads fail"])
async def test_an_expired_wait_keeps_its_last_task_and_its_last_read_s_error(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory, fault: int | None
) -> None:
    task_id = fake.script_task(steps=[("running", 40)])  # never finishes
    handled = Handled()
    timeout = 1.0 if fault is None else 2.0  # room for its reads on a loaded machine
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id, timeout=timeout)
        # Twice: the first read's answer (running) was surely taken in by then.
        await settle(lambda: _was_read(fake, task_id, times=2))
        if fault is not None:
            fake.fail_next(fault, times=None, path="faceswap/result")  # every read after
        (delivery,) = await handled.until(1)
        with pytest.raises(WaitTimeoutError) as caught:
            await watcher.result(task_id)
        fake.clear_faults()
        # Delivered: it may be watched again, to wait longer.
        await settle(lambda: watcher.watch(task_id, timeout=timeout))
        (_, again) = await handled.until(2)
    error = caught.value
    assert (delivery.outcome, error.timeout, delivery.timeout) == ("expired", timeout, timeout)
    told = delivery.error  # what a handler tells: the error result() raised, alike
    assert isinstance(told, WaitTimeoutError) and str(told) == str(error)
    assert (told.still_watched, told.__cause__) == (False, delivery.last_error)
    assert again.outcome == "expired" and again.task is not None  # read anew, and ended
    assert error.still_watched is False
    assert "; its wait expired: no worker reads it any more; watch it again" in str(error)
    assert delivery.task is not None and error.task == delivery.task
    assert (delivery.task.id, delivery.task.status, delivery.task.percent) == (
        task_id,
        "running",
        40,
    )
    if fault is None:
        assert (delivery.last_error, error.last_error) == (None, None)
        return
    assert isinstance(delivery.last_error, ServerError)
    assert delivery.last_error.status_code == 503
    assert isinstance(error.last_error, ServerError) and error.__cause__ is error.last_error
    assert "last seen running at 40%; its last read failed: ServerError: 503" in str(error)


@pytest.mark.parametrize("fault", [None, 503])
async def test_a_result_that_times_out_tells_what_the_fleet_last_read(
    fake: FakeGPTunnel, new_store: StoreFactory, fault: int | None
) -> None:
    """It said "no state read yet", with no task, of a task the fleet had read often."""
    task_id = fake.script_task(steps=[("running", 40)])  # never finishes
    # No retries: a failed read is saved at once, not after a second of backoff.
    async with (
        fake.client(poll_policy=FAST, max_retries=0) as client,
        Watcher(client, new_store()) as worker,
    ):
        await worker.watch(task_id)
        await settle(lambda: _was_read(fake, task_id, times=2))
        if fault is not None:
            fake.fail_next(fault, times=None, path="faceswap/result")  # every read after
        reader = Watcher(client, new_store())  # another process: it shares the store only
        timeouts: list[WaitTimeoutError] = []

        async def timed_out() -> bool:  # until a failed read (with its retries) is saved
            with pytest.raises(WaitTimeoutError) as caught:
                await reader.result(task_id, timeout=0.2)
            timeouts.append(caught.value)
            return fault is None or caught.value.last_error is not None

        await settle(timed_out)
        await reader.close()
    fake.clear_faults()
    error = timeouts[-1]
    assert error.timeout == 0.2
    assert error.still_watched is True  # ask again later
    assert error.task is not None
    assert (error.task.id, error.task.status, error.task.percent) == (task_id, "running", 40)
    if fault is None:
        assert error.last_error is None
        assert str(error).endswith("(last seen running at 40%)")
        return
    assert isinstance(error.last_error, ServerError)
    assert error.last_error.status_code == 503
    assert "last seen running at 40%; its last read failed: ServerError: 503" in str(error)


async def test_a_result_on_an_id_the_store_does_not_hold_times_out_saying_so(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    watcher = Watcher(client, new_store())  # no loops: the task is registered, never read
    await watcher.watch(registered := fake.script_task(steps=[("running", 40)]))
    with pytest.raises(WaitTimeoutError) as unknown:
        await watcher.result("a-mistyped-id", timeout=0.2)
    with pytest.raises(WaitTimeoutError) as unread:
        await watcher.result(registered, timeout=0.2)
    await watcher.close()
    assert (unknown.value.task, unknown.value.still_watched) == (None, False)
    assert "(the store holds no wait for it: no worker registered it with watch()" in str(
        unknown.value
    )
    assert (unread.value.task, unread.value.still_watched) == (None, True)
    assert str(unread.value).endswith("(no state read yet)")


class SlowOutcomes(MemoryStore):
    """A store whose every look at an outcome takes a round trip of 50 ms."""

    async def outcome(self, task_id: str) -> str | None:
        await asyncio.sleep(0.05)
        return await super().outcome(task_id)


@pytest.mark.parametrize("timeout", [0, 0.0, 1e-9, 0.001])
async def test_a_result_with_a_timeout_of_zero_or_near_it_is_one_look_at_the_store(
    client: GPTunnelClient, fake: FakeGPTunnel, timeout: float
) -> None:
    """``timeout=0`` was a ConfigurationError, and a timeout shorter than a round trip
    to the store timed out a task long done without a look at it."""
    store = SlowOutcomes()
    handled = Handled()
    done = fake.script_task(steps=[("done", 100)])
    running = fake.script_task(steps=[("running", 40)])
    async with Watcher(client, store, handler=handled) as watcher:
        await watcher.watch(done)
        await handled.until(1)
        task = await watcher.result(done, timeout=timeout)
        await watcher.watch(running)
        await settle(lambda: _was_read(fake, running))
        with pytest.raises(WaitTimeoutError) as unfinished:
            await watcher.result(running, timeout=timeout)
        with pytest.raises(WaitTimeoutError) as unknown:
            await watcher.result("a-mistyped-id", timeout=timeout)
    assert task.id == done and task.is_done
    assert unfinished.value.still_watched is True
    assert unfinished.value.timeout == timeout
    assert unknown.value.still_watched is False


class _NoLastReads(MemoryStore):
    """A store of the user's own that cannot tell what was last read, or fails to."""

    def __init__(self, fails: bool) -> None:
        super().__init__()
        if not fails:
            self.last_read = None  # type: ignore[assignment]

    async def last_read(self, task_id: str) -> str | None:
        raise StoreUnavailableError("the store failed")


@pytest.mark.parametrize("fails", [False, True], ids=["has-none", "fails"])
async def test_a_result_times_out_as_before_where_the_store_cannot_tell(
    client: GPTunnelClient, fails: bool
) -> None:
    watcher = Watcher(client, _NoLastReads(fails))
    with pytest.raises(WaitTimeoutError) as caught:
        await watcher.result("a-mistyped-id", timeout=0.2)
    await watcher.close()
    assert (caught.value.task, caught.value.still_watched) == (None, None)
    assert str(caught.value).endswith("(no state read yet)")


async def test_an_expired_wait_whose_reads_all_failed_says_why(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("running", 40)])
    fake.fail_next(401, times=None, path="faceswap/result")  # a key revoked: ridden through
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id, timeout=2.0)  # room for a read on a loaded machine
        (delivery,) = await handled.until(1)
    fake.clear_faults()
    assert (delivery.outcome, delivery.task) == ("expired", None)
    assert isinstance(delivery.last_error, AuthenticationError)
    assert delivery.last_error.status_code == 401 and delivery.last_error.issues == ()


SLOW = PollPolicy(initial=3.0, max_interval=3.0, jitter=0.0, strategy="exponential")
"""A pacing whose second read would come after a 2-second watch's deadline."""


async def test_a_task_done_before_the_deadline_is_read_once_more_and_delivered_done(
    fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """The pacing's next read fell past the watch's deadline: the claim at the deadline
    expired the wait unread, and a task done a second before it was delivered
    "expired", still running, where a live wait reads once more before its deadline."""
    task_id = fake.script_task(duration=1.0)  # done 1 s after its first read
    handled = Handled()
    async with (
        fake.client(poll_policy=SLOW) as client,
        Watcher(client, new_store(), handler=handled) as watcher,
    ):
        await watcher.watch(task_id, timeout=2.0)  # a last read at 1.8 s
        (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"
    assert delivery.task is not None and delivery.task.is_done


async def test_a_read_error_ridden_through_is_read_once_more_before_the_deadline(
    fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """After an error a durable wait rides through (a 403 until an operator acts), the
    next read, ``max_interval`` later, fell past the deadline: the wait expired with
    that error, though the key worked again a second before it."""
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(403, times=1, path="faceswap/result")
    handled = Handled()
    async with (
        fake.client(poll_policy=SLOW, max_retries=0) as client,
        Watcher(client, new_store(), handler=handled) as watcher,
    ):
        await watcher.watch(task_id, timeout=2.0)
        (delivery,) = await handled.until(1)
    assert (delivery.outcome, delivery.last_error) == ("done", None)


@pytest.mark.parametrize("family", ["faceswap", "media"])
async def test_a_task_the_api_does_not_know_ends_the_wait_once_a_read_confirms_it(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory, family: str
) -> None:
    """A mistyped id, or a task of another family, was read again until the watch's
    deadline, three days by default, and then delivered "expired"."""
    task_id = "no-such-task"  # the emulator's own "Task not found" (media's: code 4)
    handled = Handled()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id, family=family, timeout=60)
        (delivery,) = await handled.until(1)
        with pytest.raises(NotFoundError) as caught:
            await watcher.result(task_id)
    assert loop.time() - started < 30  # not at the deadline
    assert (delivery.outcome, delivery.task) == ("error", None)
    assert type(delivery.last_error) is NotFoundError
    assert "Task not found" in str(delivery.last_error)
    fleet_hint = f"; the fleet read it as a {family} task: a mistyped id? if not, watch it "
    assert fleet_hint in str(delivery.last_error)  # not only the client's "read it through"
    assert type(caught.value) is NotFoundError
    assert str(caught.value) == str(delivery.last_error)
    assert sum(task_id in r.query.values() or task_id in r.path for r in fake.requests) == 2


async def test_a_task_watched_with_the_wrong_family_may_be_watched_again_with_its_own(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """The "no such task" error said to watch it with its family, which watch() refused
    for an hour: the record of the delivered wait was kept."""
    task_id = fake.script_task(steps=[("done", 100)])  # a face swap
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        assert await watcher.watch(task_id, family="media") is True  # the wrong family
        (wrong,) = await handled.until(1)
        # Once delivered (acknowledged), it may be registered again.
        await settle(lambda: watcher.watch(task_id, family="faceswap", metadata={"n": 2}))
        (_, right) = await handled.until(2)
        assert await watcher.watch(task_id) is False  # done: registered again as before
        task = await watcher.result(task_id)
    assert wrong.outcome == "error"
    assert "once this is delivered: watcher.watch(task_id, family=...), one of " in str(
        wrong.last_error
    )
    assert (right.outcome, right.family, right.metadata) == ("done", "faceswap", {"n": 2})
    assert task.id == task_id and task.is_done


@pytest.mark.parametrize("how", ["from-its-handler", "after-a-dead-letter"])
async def test_a_wait_ended_by_the_wrong_family_is_renewed_from_its_handler_or_dead_letter(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory, how: str
) -> None:
    """From the handler, where the app learns of the error, watch() returned False (the
    delivery was not acknowledged yet) and nothing was watched any more; after a dead
    letter, Redis refused it for a day where the memory store took it."""
    task_id = fake.script_task(steps=[("done", 100)])  # a face swap
    delivered: list[Delivery] = []
    renewed: list[bool] = []
    arrived = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        delivered.append(delivery)
        arrived.set()
        if delivery.outcome != "error":
            return
        if how == "from-its-handler":
            renewed.append(await watcher.watch(task_id, family="faceswap"))
            return
        raise RuntimeError("the bot could not tell the user")  # the only attempt

    watcher = Watcher(client, new_store(), handler=handler, max_attempts=1)
    async with watcher:
        await watcher.watch(task_id, family="media")  # the wrong family
        async with asyncio.timeout(20):
            while len(delivered) < 1:
                arrived.clear()
                await arrived.wait()
            if how == "after-a-dead-letter":
                await settle(lambda: _dead_letters_are(new_store(), 1))
                renewed.append(await watcher.watch(task_id, family="faceswap"))
            while len(delivered) < 2:
                arrived.clear()
                await arrived.wait()
    assert renewed == [True]
    assert [d.outcome for d in delivered] == ["error", "done"]
    assert delivered[1].family == "faceswap"


class GoneAfterAnAck(RedisStore):
    """A Redis that goes away just after a delivery's acknowledgement: every watch()
    from then on fails."""

    acked = False

    async def ack(self, entry: Any) -> None:
        await super().ack(entry)
        self.acked = True

    async def ack_and_watch(self, entry: Any, record: str, timeout: float) -> bool:
        renewed = await super().ack_and_watch(entry, record, timeout)
        self.acked = True
        return renewed

    async def watch(self, task_id: str, record: str, timeout: float) -> bool:
        if self.acked:
            raise StoreUnavailableError("registering a wait: the store failed (ConnectionError)")
        return await super().watch(task_id, record, timeout)


async def test_a_wait_renewed_from_its_handler_survives_a_store_gone_after_the_ack(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis
) -> None:
    """The handler's watch() returned True, the delivery was acknowledged, then the new
    wait was registered in a second command: a Redis gone in between lost it, with a
    warning no one could act on (the handler had returned). One script does both now."""
    task_id = fake.script_task(steps=[("done", 100)])
    handled = Handled()
    renewed: list[bool] = []

    async def handler(delivery: Delivery) -> None:
        await handled(delivery)
        if delivery.outcome == "error":
            renewed.append(await watcher.watch(task_id, family="faceswap"))

    store = GoneAfterAnAck(redis, name="gone-after-ack")
    watcher = Watcher(client, store, handler=handler)
    async with watcher:
        await watcher.watch(task_id, family="media")  # the wrong family: "error"
        deliveries = await handled.until(2)
    assert renewed == [True]
    assert [d.outcome for d in deliveries] == ["error", "done"]


@pytest.mark.parametrize("kind", ["error", "expired", "done", "failed"])
async def test_an_ack_with_a_new_wait_renews_only_an_ended_wait_and_may_run_twice(
    redis: Redis, kind: str
) -> None:
    """redis-py's retry, or the store's own on a connection Redis closed, sends the
    script again when its reply was lost: the second run finds the new wait, True."""
    store = RedisStore(redis, name=f"renew-{kind}")
    record = '{"family":"faceswap","metadata":null,"timeout":60}'
    await store.watch("t-1", record, 60.0)
    task = Task(id="t-1", status="done" if kind == "done" else "failed", percent=100)
    outcome = Outcome(kind, task if kind in ("done", "failed") else None, 60.0)  # type: ignore[arg-type]
    await store.finish("t-1", outcome.dumps())
    (entry,) = await store.take("w", 1, 0.01, 60.0)
    renews = kind in ("error", "expired")
    assert await store.ack_and_watch(entry, record, 30.0) is renews
    assert await store.ack_and_watch(entry, record, 30.0) is renews
    status = await store.status()
    assert (status.watched, status.due, status.finished_unhandled) == (int(renews), int(renews), 0)
    state = await redis.hget(store.task_key("t-1"), "state")
    assert state == (b"watching" if renews else b"delivered")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, None),  # one "no such task" answer, not confirmed by the next read
        (404, "<html>Not Found</html>"),  # a path the API lacks: base_url, not the task
        (404, {"error": {"message": "Invalid URL", "type": "invalid_request_error"}}),
        (400, None),
        (401, None),  # a key revoked, a balance spent, a permission withdrawn:
        (402, None),  # an operator's fix heals them
        (403, None),
        (409, None),
        (501, None),
        (520, None),  # a CDN in front of the API
    ],
)
async def test_a_read_error_that_may_heal_is_ridden_through(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    status: int,
    body: Any,
) -> None:
    """One odd answer ended a paid task's wait as "error" while the task ran on."""
    task_id = fake.script_task(steps=[("running", 40), ("done", 100)])
    times = 1 if (status, body) == (404, None) else 3  # one "no such task" alone
    fake.fail_next(status, times=times, body=body, path="faceswap/result")
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id)
        (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"


async def test_a_streak_of_failed_reads_logs_one_warning_and_the_rest_at_debug(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outage of the API logged one WARNING per read of every task until it ended;
    a streak now logs one, and a read that succeeds ends the streak."""
    task_id = fake.script_task(steps=[("running", 40)])
    fake.fail_next(401, times=3, path="faceswap/result")  # ridden through, not retried
    with caplog.at_level(logging.DEBUG, logger="gptunnel_async.fleet"):
        async with Watcher(client, new_store()) as watcher:
            await watcher.watch(task_id)
            await settle(lambda: _was_read(fake, task_id, times=5))  # 3 failed, 2 read
            fake.fail_next(401, times=2, path="faceswap/result")
            await settle(lambda: _was_read(fake, task_id, times=8))  # 2 failed, 1 read
    fake.clear_faults()
    about_reads = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith(f"watcher: reading task {task_id}")
    ]
    levels = [level for level, _ in about_reads]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING, logging.DEBUG]
    warning = about_reads[0][1]
    assert ": 401 unauthorized_request_error:" in warning  # not "401": an id may hold it
    assert warning.endswith("(further failed reads of it are logged at DEBUG until one succeeds)")
    assert about_reads[1][1].startswith(f"watcher: reading task {task_id} failed again: ")


class FlakyStore(MemoryStore):
    """A store whose first claims fail: a store of the user's own may raise anything."""

    def __init__(self, failures: list[Exception]) -> None:
        super().__init__()
        self.failures = failures

    async def claim(self, worker: str, limit: int, lease: float) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        return await super().claim(worker, limit, lease)


async def test_a_loop_s_failures_are_logged_once_each_and_their_end_is_logged_too(
    client: GPTunnelClient, fake: FakeGPTunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's error names what it did: "watcher: claiming due tasks: claiming due
    tasks: the store failed (...)" said it twice; and nothing said the outage ended."""
    refused = StoreUnavailableError("claiming due tasks: the store failed (ConnectionError)")
    store = FlakyStore([refused, RuntimeError("a bug")])
    handled = Handled()
    with caplog.at_level(logging.INFO, logger="gptunnel_async.fleet"):
        async with Watcher(client, store, handler=handled) as watcher:
            await watcher.watch(fake.script_task(steps=[("done", 100)]))
            await handled.until(1)
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    about_claims = [line for line in lines if "claiming due tasks" in line[1]]
    assert [
        (level, message.split("; trying")[0], trace) for level, message, trace in about_claims
    ] == [
        ("WARNING", "watcher: claiming due tasks: the store failed (ConnectionError)", False),
        ("WARNING", "watcher: claiming due tasks: a bug", True),
        ("INFO", "watcher: claiming due tasks works again, after 2 failure(s)", False),
    ]


async def test_a_path_404_then_one_no_such_task_is_no_confirmation(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """Both are NotFoundError: comparing the class alone let a misconfigured worker's
    404 and one odd answer end a running task's wait."""
    task_id = fake.script_task(steps=[("running", 40), ("done", 100)])
    fake.fail_next(404, body="<html>Not Found</html>", times=1, path="faceswap/result")
    fake.fail_next(404, times=1, path="faceswap/result")  # the API's own "not found"
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id)
        (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"


class SlowClaims(MemoryStore):
    """A store whose claims answer only when the test says: one in flight as a close
    begins."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = asyncio.Event()
        self.answer = asyncio.Event()

    async def claim(self, worker: str, limit: int, lease: float) -> Any:
        found = await super().claim(worker, limit, lease)
        if found[0]:
            self.claiming.set()
            await self.answer.wait()
        return found


async def test_tasks_claimed_as_a_close_begins_are_handed_back_too(
    client: GPTunnelClient, fake: FakeGPTunnel
) -> None:
    """The claim came back after the close began: its reads were cancelled before they
    started, and the tasks waited out their lease."""
    store = SlowClaims()
    handled = Handled()
    task_id = fake.script_task(steps=[("done", 100)])
    first = Watcher(client, store, handler=handled, lease=30, worker="first")
    await first.watch(task_id)
    loop = asyncio.get_running_loop()
    async with first:
        async with asyncio.timeout(15):
            await store.claiming.wait()
        closing = asyncio.create_task(first.close(grace=1.0))
        await asyncio.sleep(0.05)  # the close has begun
        store.answer.set()
        await closing
    closed = loop.time()
    store.answer.set()
    async with Watcher(client, store, handler=handled, lease=30, worker="second"):
        (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"
    assert loop.time() - closed < 10  # handed back, not left to the 30 s lease


async def test_a_store_failure_in_cleanup_is_the_store_s_error_not_a_cancellation(
    client: GPTunnelClient, unused_tcp_port: int
) -> None:
    """In a task that had caught its own cancellation, a Redis failure came out as
    CancelledError: not a GPTunnelError."""
    unreachable = Redis(port=unused_tcp_port, retry=Retry(NoBackoff(), 0))
    watcher = Watcher(client, RedisStore(unreachable, name="gone"))
    raised: list[BaseException] = []

    async def cleanup() -> None:
        try:
            await watcher.result("t-1", timeout=5)
        except GPTunnelError as exc:
            raised.append(exc)

    await _in_cleanup_after_a_cancellation(cleanup)
    await unreachable.aclose()
    assert [type(exc) for exc in raised] == [StoreUnavailableError]


async def _in_cleanup_after_a_cancellation(cleanup: Callable[[], Awaitable[None]]) -> None:
    """Run ``cleanup`` in a task that has caught its own cancellation (and raises it
    again after): the task's ``cancelling()`` count stays 1 meanwhile."""

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await cleanup()
            raise

    worker = asyncio.create_task(cleans_up())
    await asyncio.sleep(0)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker


async def test_a_read_cut_short_by_a_close_is_handed_back_to_the_fleet_at_once(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """A deploy closes each worker mid-read: its tasks waited out their lease (30 s by
    default) before another worker read them."""
    task_id = fake.script_task(steps=[("done", 100)])
    fake.delay_next(5.0, times=1, path="faceswap/result")  # the first read hangs
    handled = Handled()
    loop = asyncio.get_running_loop()
    first = Watcher(client, new_store(), handler=handled, lease=30, worker="first")
    async with first:
        await first.watch(task_id)
        await settle(lambda: _was_read(fake, task_id))
        await first.close(grace=0.1)
    closed = loop.time()
    async with Watcher(client, new_store(), handler=handled, lease=30, worker="second"):
        (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"
    assert loop.time() - closed < 10  # handed back, not left until the lease ends


async def test_another_error_within_a_streak_of_failed_reads_is_a_warning_again(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 503 outage, then the key revoked: every 401 was a DEBUG line."""
    task_id = fake.script_task(steps=[("running", 40)])
    fake.fail_next(503, times=2, path="faceswap/result")
    fake.fail_next(401, times=2, path="faceswap/result")
    with caplog.at_level(logging.DEBUG, logger="gptunnel_async.fleet"):
        async with (
            fake.client(poll_policy=FAST, max_retries=0) as one_try,  # a read, a request
            Watcher(one_try, new_store()) as watcher,
        ):
            await watcher.watch(task_id)
            await settle(lambda: _was_read(fake, task_id, times=5))
    fake.clear_faults()
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and f"reading task {task_id}" in r.getMessage()
    ]
    # The statuses as the line gives them: a random task id may hold "503" or "401" itself.
    statuses = [(": 503 " in line, ": 401 " in line) for line in warnings]
    assert statuses == [(True, False), (False, True)]


async def test_a_read_that_would_outlast_its_lease_is_cut_before_the_lease_ends(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """Else it would go on while another worker, the lease run out, claimed the task:
    past the deadline, that one would deliver the wait expired mid-read."""
    task_id = fake.script_task(steps=[("done", 100)])
    fake.delay_next(3.0, times=None, path="faceswap/result")  # every read: 3 s
    handled = Handled()
    loop = asyncio.get_running_loop()
    lease = 0.5
    async with (
        Watcher(client, new_store(), handler=handled, lease=lease, worker="a") as first,
        Watcher(client, new_store(), handler=handled, lease=lease, worker="b"),
    ):
        started = loop.time()
        await first.watch(task_id, timeout=1.0)
        (delivery,) = await handled.until(1)
        delivered_after = loop.time() - started
        await asyncio.sleep(0.3)  # time for a second delivery to show, were there one
    fake.clear_faults()
    assert len(handled.deliveries) == 1
    assert delivery.outcome == "expired" and delivery.task is None
    assert isinstance(delivery.last_error, APITimeoutError)
    assert "80% of the watcher's lease" in str(delivery.last_error)
    assert delivery.last_error.status_code is None
    assert delivered_after < 2.5  # no read ran its 3 s: each was cut at 0.4 s


class LateClaims(MemoryStore):
    """A store whose claims answer ``delay`` seconds after they took their tasks (a slow
    network, a Redis stall), and which records each claim of a task made while the read
    of an earlier claim of it had not saved its outcome yet."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.reading: set[str] = set()
        self.overlaps: list[str] = []
        self.saves = 0

    async def claim(self, worker: str, limit: int, lease: float) -> Any:
        claims, next_due = await super().claim(worker, limit, lease)
        for claim in claims:
            if claim.task_id in self.reading:
                self.overlaps.append(claim.task_id)
            self.reading.add(claim.task_id)
        if claims:
            await asyncio.sleep(self.delay)
        return claims, next_due

    async def reschedule(self, task_id: str, *args: Any) -> bool:
        self.saves += 1
        self.reading.discard(task_id)
        return await super().reschedule(task_id, *args)


async def test_a_read_is_cut_at_its_share_of_the_lease_counted_from_the_claim(
    client: GPTunnelClient, fake: FakeGPTunnel
) -> None:
    """The cut was counted from the read's start: a claim whose answer came late (half
    the lease here) let the read run past the lease's end, when another worker may
    claim the task and read it at the same time."""
    task_id = fake.script_task(steps=[("running", 40)])
    fake.delay_next(5.0, times=None, path="faceswap/result")  # every read hangs
    store = LateClaims(delay=1.0)
    async with Watcher(client, store, lease=2.0) as watcher:
        await watcher.watch(task_id)
        await settle(lambda: _now(store.saves >= 1))
    fake.clear_faults()
    assert store.overlaps == []


class SavesAfterAnotherClaim:
    """A store whose first save of a read waits until its task was claimed again (its
    lease ran out meanwhile: a Redis stall, a worker's blocked event loop), then records
    whether the store took that stale save."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims = 0
        self.claimed_again = asyncio.Event()
        self.stalled = False
        self.stale_saves: list[bool] = []
        self.stale_saved = asyncio.Event()

    async def claim(self, worker: str, limit: int, lease: float) -> Any:
        found = await super().claim(worker, limit, lease)  # type: ignore[misc]
        self.claims += len(found[0])
        if self.claims >= 2:
            self.claimed_again.set()
        return found

    async def reschedule(self, *args: Any) -> bool:
        if self.stalled:  # the newer claim's saves: after the stale one
            await self.stale_saved.wait()
            return bool(await super().reschedule(*args))  # type: ignore[misc]
        self.stalled = True
        await self.claimed_again.wait()
        saved = bool(await super().reschedule(*args))  # type: ignore[misc]
        self.stale_saves.append(saved)
        self.stale_saved.set()
        return saved


class StalledMemoryStore(SavesAfterAnotherClaim, MemoryStore):
    pass


class StalledRedisStore(SavesAfterAnotherClaim, RedisStore):
    pass


@pytest.fixture(params=["memory", "redis"])
def stalled_saves(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return StalledMemoryStore()
    return StalledRedisStore(request.getfixturevalue("redis"), name="stalled")


async def test_a_stale_save_never_lands_on_another_claim_of_one_worker_name(
    client: GPTunnelClient, fake: FakeGPTunnel, stalled_saves: Any
) -> None:
    """Two workers started with one worker= name (two replicas of one config), or one
    worker claiming a task again after its lease ran out, held their leases under one
    name: a read's save that came late landed on the newer claim, its pacing and
    lease overwritten, the newer read's own save refused."""
    task_id = fake.script_task(steps=[("running", 40)])
    store = stalled_saves
    async with (
        Watcher(client, store, lease=0.5, worker="replica") as first,
        Watcher(client, store, lease=0.5, worker="replica"),
    ):
        await first.watch(task_id)
        await settle(lambda: _now(bool(store.stale_saves)))
    assert store.stale_saves == [False]


async def test_workers_sharing_one_name_deliver_each_task_once(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """Replicas started from one configuration: the stream's group sees one consumer,
    and each delivery still reaches one handler once, acknowledged."""
    ids = [fake.script_task(steps=[("running", 40), ("done", 100)]) for _ in range(8)]
    handled = Handled()
    async with (
        Watcher(client, new_store(), handler=handled, worker="replica") as first,
        Watcher(client, new_store(), handler=handled, worker="replica"),
    ):
        for task_id in ids:
            await first.watch(task_id)
        await handled.until(len(ids))
        await asyncio.sleep(0.3)  # time for a duplicate to show, were there one
    assert sorted(d.task_id for d in handled.deliveries) == sorted(ids)
    status = await new_store().status()
    assert (status.watched, status.finished_unhandled) == (0, 0)


@pytest.mark.parametrize("with_budget", [False, True], ids=["no budget", "budget"])
async def test_a_read_cut_at_its_lease_during_retries_names_what_they_retried(
    fake: FakeGPTunnel, new_store: StoreFactory, with_budget: bool
) -> None:
    """The client's retries of a 503 pause 5 s (its Retry-After); the lease cuts the read
    at 0.4 s, in that pause: the wait's last error said only that the read took too
    long, nothing of the 503 it was retrying. With a budget, it says that 429s slow
    every worker down too (a lease or a timeout changes nothing there)."""
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(503, times=None, retry_after=5, path="faceswap/result")
    handled = Handled()
    budget = InProcessBudget(100) if with_budget else None
    async with (
        fake.client(max_retries=3, budget=budget) as retrying,
        Watcher(retrying, new_store(), handler=handled, lease=0.5) as watcher,
    ):
        await watcher.watch(task_id, timeout=1.0)
        (delivery,) = await handled.until(1)
    fake.clear_faults()
    assert delivery.outcome == "expired"
    assert isinstance(delivery.last_error, APITimeoutError)
    text = str(delivery.last_error)
    assert "80% of the watcher's lease" in text
    assert "; its last attempt: ServerError: 503" in text
    assert ("slows every worker's reads down after a 429" in text) is with_budget
    assert fake.api_key not in text


async def _was_read(fake: FakeGPTunnel, task_id: str, times: int = 1) -> bool:
    return sum(task_id in request.query.values() for request in fake.requests) >= times


async def test_a_watcher_used_for_results_alone_keeps_no_subscription_once_they_return(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """A web process that only awaits results, its watcher never closed, held its
    listener task and a pub/sub connection until the next notice came."""
    store = new_store()
    reader = Watcher(client, store, worker="reader")  # never entered, never closed
    async with Watcher(client, new_store(), handler=Handled(), worker="bot") as bot:
        first = fake.script_task(steps=[("running", 10), ("done", 100)])
        second = fake.script_task(steps=[("running", 10), ("done", 100)])
        await bot.watch(first)
        await bot.watch(second)
        results = await asyncio.gather(reader.result(first), reader.result(second))
        assert [task.status for task in results] == ["done", "done"]
        await settle(lambda: _not_listening(store))
        # Listening again for the next result, and ending again after it.
        third = fake.script_task(steps=[("running", 10), ("done", 100)])
        await bot.watch(third)
        assert (await reader.result(third, timeout=15)).status == "done"
        await settle(lambda: _not_listening(store))


async def test_results_cut_short_at_any_point_leave_no_subscription_behind(
    client: GPTunnelClient, new_store: StoreFactory
) -> None:
    """A result() timing out while its listener subscribed: redis-py may swallow the
    listener's cancellation, and a listener cancelled once and forgotten stayed
    subscribed for good (50 of 300 calls left one, and a pool of 50 ran dry)."""
    store = new_store()
    reader = Watcher(client, store, worker="reader")
    await reader.watch("never-finishes", timeout=60)
    timeouts = itertools.cycle([0.0005, 0.002, 0.005, 0.01, 0.03])

    async def one() -> None:
        with contextlib.suppress(WaitTimeoutError):
            await reader.result("never-finishes", timeout=next(timeouts))

    for turn in range(60):
        await asyncio.gather(*(one() for _ in range(1 + turn % 4)))
    await settle(lambda: _not_listening(store))


async def test_two_results_of_one_task_both_hear_its_finish(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """They shared one event, which the first to return took away: the second heard of
    the finish only at its next look at the store, up to a second later."""
    task_id = fake.script_task(steps=[("running", 10), ("running", 20), ("done", 100)])
    store = new_store()
    reader = Watcher(client, store, worker="reader")
    async with Watcher(client, new_store(), handler=Handled(), worker="bot") as bot:
        await bot.watch(task_id)
        first = asyncio.create_task(reader.result(task_id))
        second = asyncio.create_task(reader.result(task_id))
        done = await asyncio.gather(first, second)
    assert [task.status for task in done] == ["done", "done"]
    assert reader._finished == {}


async def test_result_works_in_cleanup_after_a_cancellation_was_caught(
    client: GPTunnelClient, new_store: StoreFactory
) -> None:
    """A task that caught its own cancellation to clean up: result() raised
    CancelledError at once there, though the outcome was stored."""
    store = new_store()
    watcher = Watcher(client, store)
    await watcher.watch("t-clean")
    assert await watcher.resolve(Task(id="t-clean", status="done", percent=100)) is True
    seen: list[str] = []

    async def cleanup() -> None:
        seen.append((await watcher.result("t-clean", timeout=5)).status)

    await _in_cleanup_after_a_cancellation(cleanup)
    assert seen == ["done"]


async def _not_listening(store: WatchStore) -> bool:
    listeners = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "Watcher._dispatch_finishes"
    ]
    if isinstance(store, RedisStore):
        ((_, subscribers),) = await store.redis.pubsub_numsub(store.channel)
        return not listeners and subscribers == 0
    return not listeners


async def test_a_webhook_resolves_the_wait_for_the_whole_fleet_and_the_poll_does_nothing(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("running", 30)])  # a poll would never see it done
    handled = Handled()
    receiving = Watcher(client, new_store(), worker="web")
    async with Watcher(client, new_store(), handler=handled, worker="bot") as bot:
        await bot.watch(task_id, metadata={"chat_id": 7})
        webhook = Task(id=task_id, status="done", percent=100, result="https://x/r.png")
        assert await receiving.resolve(webhook) is True
        assert await receiving.resolve(webhook) is False  # the second word does nothing
        assert await bot.result(task_id) == webhook
        (delivery,) = await handled.until(1)
        await asyncio.sleep(0.3)
    assert len(handled.deliveries) == 1
    assert delivery.task == webhook
    assert delivery.metadata == {"chat_id": 7}
    assert await receiving.resolve(Task(id="unwatched", status="done")) is False
    assert await receiving.resolve(Task(id=task_id, status="running")) is False


async def test_a_blocking_read_of_the_stream_never_outlasts_the_client_s_socket_timeout(
    client: GPTunnelClient, redis_url: str
) -> None:
    """A blocking read the client gave up on while Redis handed it an entry would leave
    the entry pending for this worker: delivered a minute later (``delivery_timeout``),
    as a redelivery. So the store blocks for half the client's socket timeout at most."""
    short, watching = Redis.from_url(redis_url, socket_timeout=0.4), Redis.from_url(redis_url)
    blocks: list[int] = []
    try:
        async with (
            watching.monitor() as monitor,
            Watcher(client, RedisStore(short, name="short"), handler=Handled()),
            asyncio.timeout(10),
        ):
            while len(blocks) < 3:
                command = (await monitor.next_command())["command"].split()
                if command[0].upper() == "XREADGROUP":
                    blocks.append(int(command[command.index("BLOCK") + 1]))
    finally:
        await short.aclose()
        await watching.aclose()
    assert blocks == [200, 200, 200]  # milliseconds: half of 0.4 s


async def test_a_budget_whose_redis_is_away_is_no_read_error_of_the_task(
    fake: FakeGPTunnel, redis: Redis, unused_tcp_port: int
) -> None:
    """The shared budget failing is the fleet's trouble, not the task's: the task comes
    back after its lease, rather than being paced as after a revoked key, with the
    budget's error as what its last read saw."""
    away = Redis(port=unused_tcp_port, retry=Retry(NoBackoff(), 0))  # refused at once
    task_id = fake.script_task(steps=[("running", 40)])
    handled = Handled()
    try:
        async with (
            fake.client(poll_policy=FAST, budget=RedisBudget(away, 100)) as budgeted,
            Watcher(budgeted, RedisStore(redis, name="b"), handler=handled, lease=0.5) as w,
        ):
            await w.watch(task_id, timeout=1.0)
            (delivery,) = await handled.until(1)
    finally:
        await away.aclose()
    assert (delivery.outcome, delivery.task, delivery.last_error) == ("expired", None, None)
    assert not await _was_read(fake, task_id)


async def test_workers_gone_and_holding_nothing_leave_the_consumer_group(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis
) -> None:
    """Every worker start is a consumer of its own name: without pruning, a fleet that
    restarts on each deploy grows its group for good."""
    store = RedisStore(redis, name="restarts")
    handled = Handled()
    for start in range(5):
        async with Watcher(client, store, handler=handled, worker=f"w{start}") as watcher:
            await watcher.watch(fake.script_task(steps=[("done", 100)]))
            await handled.until(start + 1)
    # A worker that took a delivery and has not acknowledged it (dead, or still at it).
    await redis.xadd(store.stream_key, {"task": "held"})
    await redis.xreadgroup("handlers", "holder", {store.stream_key: ">"}, count=1)

    async def consumers() -> set[bytes]:
        return {c["name"] for c in await redis.xinfo_consumers(store.stream_key, "handlers")}

    assert await consumers() == {b"w0", b"w1", b"w2", b"w3", b"w4", b"holder"}
    assert await store.prune_consumers(3600) == 0  # all seen within the hour
    await asyncio.sleep(0.05)
    assert await store.prune_consumers(0.01) == 5  # all but the one holding a delivery
    assert await consumers() == {b"holder"}


@pytest.mark.parametrize("idle", [0, -1, float("inf"), float("nan"), None, "60", True, 10**30])
async def test_a_prune_of_no_usable_seconds_is_refused(redis: Redis, idle: Any) -> None:
    store = RedisStore(redis, name="odd")
    assert await store.take("w", 1, 0.01, 60.0) == []
    with pytest.raises(ConfigurationError, match="idle"):
        await store.prune_consumers(idle)


async def test_a_worker_s_first_take_prunes_the_group(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = RedisStore(redis, name="deploys")
    assert await old.take("past", 1, 0.01, 60.0) == []  # makes the group
    # A worker of a past deploy, which took a delivery and acknowledged it.
    entry = await redis.xadd(old.stream_key, {"task": "t"})
    await redis.xreadgroup("handlers", "past", {old.stream_key: ">"}, count=1)
    await redis.xack(old.stream_key, "handlers", entry)
    await asyncio.sleep(0.05)
    monkeypatch.setattr(_redis_store, "CONSUMERS_KEPT", 0.01)  # a day, made short
    assert await RedisStore(redis, name="deploys").take("new", 1, 0.01, 60.0) == []
    consumers = await redis.xinfo_consumers(old.stream_key, "handlers")
    assert b"past" not in [c["name"] for c in consumers]


class Slow(Handled):
    """A handler that takes ``seconds``, as sending a photo to a chat does."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.started = asyncio.Event()
        self.returned = 0

    async def __call__(self, delivery: Delivery) -> None:
        self.started.set()
        await asyncio.sleep(self.seconds)
        await super().__call__(delivery)
        self.returned += 1


@pytest.mark.parametrize(("grace", "handled_by_first"), [(None, True), (0.0, False)])
async def test_closing_a_worker_lets_its_running_handler_finish_within_the_grace(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    grace: float | None,
    handled_by_first: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deploy closes each worker: a handler cut short there was delivered again (the
    result sent twice) by another worker after ``delivery_timeout``."""
    first, second = Slow(0.5), Handled()
    options: dict[str, Any] = {} if grace is None else {"grace": grace}
    worker = Watcher(client, new_store(), handler=first, worker="first", delivery_timeout=1)
    async with worker:
        await worker.watch(fake.script_task(steps=[("done", 100)]))
        async with asyncio.timeout(15):
            await first.started.wait()
        with caplog.at_level(logging.WARNING, logger="gptunnel_async.fleet"):
            await worker.close(**options)
    assert first.returned == (1 if handled_by_first else 0)
    cut = [r.getMessage() for r in caplog.records if "still running after" in r.getMessage()]
    assert cut == (
        []
        if handled_by_first
        else [
            "watcher: closing: 1 handler(s) still running after the 0s grace are cancelled; "
            "their deliveries come again in 2s (delivery_timeout and a second), as the same "
            "attempts"
        ]
    )
    async with Watcher(client, new_store(), handler=second, worker="2nd", delivery_timeout=1):
        if handled_by_first:
            await asyncio.sleep(
                2.5
            )  # past delivery_timeout and its margin: a redelivery would show
            assert second.deliveries == []
        else:
            (again,) = await second.until(1)
            assert again.redelivered is True
    assert (await new_store().status()).finished_unhandled == 0


async def test_a_delivery_taken_as_the_close_begins_gets_the_grace_too(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """One finished while the worker was taking: its handler starts after the close
    began, and must not be cut short (its result would be sent again)."""
    slow = Slow(1.0)
    first, second = (fake.script_task(steps=[("running", 10)]) for _ in range(2))
    worker = Watcher(client, new_store(), handler=slow, concurrency=4)
    async with worker:
        for task_id in (first, second):
            await worker.watch(task_id)
        await worker.resolve(Task(id=first, status="done", percent=100))
        async with asyncio.timeout(15):
            await slow.started.wait()
        await worker.resolve(Task(id=second, status="done", percent=100))
        await worker.close(grace=5)
    assert slow.returned == 2
    assert (await new_store().status()).finished_unhandled == 0


class SlowAfterHandlers:
    """A store whose acknowledgements and dead letters wait until the test says: one in
    flight as a close begins, its handler returned (or failed its last attempt)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing = asyncio.Event()
        self.answer = asyncio.Event()

    async def ack(self, entry: Any) -> None:
        self.writing.set()
        await self.answer.wait()
        await super().ack(entry)  # type: ignore[misc]

    async def dead_letter(self, entry: Any, reason: str) -> bool:
        self.writing.set()
        await self.answer.wait()
        return bool(await super().dead_letter(entry, reason))  # type: ignore[misc]


class SlowAfterHandlersMemoryStore(SlowAfterHandlers, MemoryStore):
    pass


class SlowAfterHandlersRedisStore(SlowAfterHandlers, RedisStore):
    pass


@pytest.fixture(params=["memory", "redis"])
def slow_after_handlers(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return SlowAfterHandlersMemoryStore()
    return SlowAfterHandlersRedisStore(request.getfixturevalue("redis"), name="slow-acks")


@pytest.mark.parametrize("fails", [False, True], ids=["returned", "failed its last attempt"])
async def test_a_close_lets_the_store_write_after_a_handler_end(
    client: GPTunnelClient, fake: FakeGPTunnel, slow_after_handlers: Any, fails: bool
) -> None:
    """close(grace=0), or a grace that ran out, cancelled the acknowledgement of a
    handler that had returned: its delivery came again to another worker after
    delivery_timeout, a duplicate the close made; so it cut a dead letter short."""
    store = slow_after_handlers
    handled = Handled(fail_times=1 if fails else 0)
    task_id = fake.script_task(steps=[("done", 100)])
    watcher = Watcher(client, store, handler=handled, max_attempts=1)
    async with watcher:
        await watcher.watch(task_id)
        async with asyncio.timeout(15):
            await store.writing.wait()
        closing = asyncio.create_task(watcher.close(grace=0))
        await asyncio.sleep(0.05)  # the close has begun, and cancelled the handler's task
        store.answer.set()
        await closing
    status = await store.status()
    assert (status.finished_unhandled, status.dead_letters) == (0, 1 if fails else 0)
    assert len(handled.deliveries) == 1


@pytest.mark.parametrize("how", ["directly", "in a task it awaits", "in a task group"])
async def test_close_from_inside_a_handler_is_refused_and_the_delivery_kept(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory, how: str
) -> None:
    """The close would wait for the handler, and cancel it: from the handler's own task,
    or one it started (a cancellation of the handler reaches a task it awaits)."""
    refused: list[BaseException] = []

    async def closing(delivery: Delivery) -> None:
        try:
            if how == "directly":
                await watcher.close(grace=0)
            elif how == "in a task it awaits":
                await asyncio.create_task(watcher.close(grace=0))
            else:
                async with asyncio.TaskGroup() as group:
                    group.create_task(watcher.close(grace=0))
        except* UsageError as group:
            refused.extend(group.exceptions)

    watcher = Watcher(client, new_store(), handler=closing)
    async with watcher:
        await watcher.watch(fake.script_task(steps=[("done", 100)]))
        await settle(lambda: _true(bool(refused)))
    assert "from a handler of this watcher" in str(refused[0])
    await settle(lambda: _finished_unhandled(new_store(), 0))  # it returned: acknowledged


class _SlowToStop(Slow):
    """A handler that takes ``cleanup`` seconds to end once cancelled (it tells the
    chat that the bot is restarting, say)."""

    def __init__(self, cleanup: float) -> None:
        super().__init__(30)
        self.cleanup = cleanup
        self.cleaned_up = self.ended = False

    async def __call__(self, delivery: Delivery) -> None:
        try:
            await super().__call__(delivery)
        except asyncio.CancelledError:
            await asyncio.sleep(self.cleanup)  # a second cancellation would cut it
            self.cleaned_up = True
            raise
        finally:
            self.ended = True


@pytest.mark.parametrize(
    ("grace", "cancelled_at"),
    [(0.2, ()), (10, (0.1, 0.2, 0.3)), (0.2, (0.8,))],
    ids=["past-its-grace", "cancelled-in-its-grace-and-again", "cancelled-past-its-grace"],
)
async def test_a_close_past_its_grace_or_cancelled_waits_for_the_handlers_cleanup(
    client: GPTunnelClient, fake: FakeGPTunnel, grace: float, cancelled_at: tuple[float, ...]
) -> None:
    """Past its grace, the close cancelled the handler, then the delivery loop cancelled
    it again as it ended, cutting its cleanup. Cancelled in its grace (the deploy's own
    deadline) and again while it waited for the loops, or once past its grace, the close
    returned at once, the handler (and the loops) running on."""
    slow = _SlowToStop(cleanup=1.2)
    watcher = Watcher(client, MemoryStore(), handler=slow, delivery_timeout=2.5)
    await watcher.__aenter__()
    await watcher.watch(fake.script_task(steps=[("done", 100)]))
    async with asyncio.timeout(15):
        await slow.started.wait()
    closing = asyncio.ensure_future(watcher.close(grace=grace))
    waited = 0.0
    for moment in cancelled_at:
        await asyncio.sleep(moment - waited)
        waited = moment
        closing.cancel()
    if cancelled_at:
        with pytest.raises(asyncio.CancelledError):
            await closing
    else:
        await closing
    assert slow.ended  # the close waited for the handler's cleanup
    assert slow.cleaned_up  # which was cancelled once
    handled = Handled()
    watcher.handler = handled
    async with watcher:  # one set of loops: it starts again and works
        (again,) = await handled.until(1)
    assert again.redelivered is True


async def test_a_watcher_running_or_closing_cannot_be_entered_again(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    slow = Slow(30)
    watcher = Watcher(client, new_store(), handler=slow, delivery_timeout=1)
    async with watcher:
        with pytest.raises(UsageError, match="running already"):
            await watcher.__aenter__()  # a nested async with would stop the outer one
        await watcher.watch(fake.script_task(steps=[("done", 100)]))
        async with asyncio.timeout(15):
            await slow.started.wait()
        closing = asyncio.ensure_future(watcher.close(grace=10))
        await asyncio.sleep(0.1)
        with pytest.raises(UsageError, match="still closing"):
            await watcher.__aenter__()
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
    handled = Handled()
    watcher.handler = handled
    async with watcher:  # closed: it starts again, and works
        (again,) = await handled.until(1)
    assert again.redelivered is True


async def test_close_leaves_loops_run_directly_to_their_caller(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    handled = Handled()
    watcher = Watcher(client, new_store(), handler=handled)
    running = asyncio.ensure_future(watcher.run())
    await watcher.close()
    await watcher.watch(fake.script_task(steps=[("done", 100)]))
    (delivery,) = await handled.until(1)  # still running: close() stopped nothing of it
    while not running.done():  # as close() does: redis-py may swallow one cancellation
        running.cancel()
        await asyncio.wait([running], timeout=0.1)
    assert running.cancelled()
    assert delivery.outcome == "done"


async def _true(value: bool) -> bool:
    return value


async def _finished_unhandled(store: WatchStore, count: int) -> bool:
    return (await store.status()).finished_unhandled == count


async def test_a_grace_that_is_not_seconds_is_refused(
    client: GPTunnelClient, new_store: StoreFactory
) -> None:
    for grace in (-1, float("nan"), "5"):
        with pytest.raises(ConfigurationError, match="grace"):
            await Watcher(client, new_store()).close(grace=grace)  # type: ignore[arg-type]


async def test_a_dead_worker_s_task_comes_back_after_its_lease(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    dead = new_store()
    lease = 0.4
    handled = Handled()
    # Registered by a process that runs no loops (a web frontend): the dead one claims it.
    assert await Watcher(client, new_store()).watch(task_id)
    claims, _ = await dead.claim("dead", 10, lease)
    assert [claim.task_id for claim in claims] == [task_id]
    assert (await dead.status()).leased == 1
    loop = asyncio.get_running_loop()
    claimed_at = loop.time()
    async with Watcher(client, new_store(), handler=handled, lease=lease, worker="next"):
        (delivery,) = await handled.until(1)
    assert loop.time() - claimed_at >= lease * 0.9
    assert delivery.outcome == "done"
    assert fake.requests  # it was read by the living worker, after the lease


async def test_a_handler_that_raises_gets_the_delivery_again_and_it_is_then_removed(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    handled = Handled(fail_times=1)
    store = new_store()
    async with Watcher(client, store, handler=handled, delivery_timeout=0.3) as watcher:
        await watcher.watch(task_id)
        first, second = await handled.until(2)
        await settle(lambda: _unhandled_is(store, 0))
    assert (first.task_id, first.redelivered, first.attempt) == (task_id, False, 1)
    assert (second.task_id, second.redelivered, second.attempt) == (task_id, True, 2)
    assert (await store.status()).dead_letters == 0  # no max_attempts: never given up
    if isinstance(store, RedisStore):  # acknowledged entries are deleted: no growth
        assert await store.redis.xlen(store.stream_key) == 0


async def _dead_letters_are(store: WatchStore, count: int) -> bool:
    return (await store.status()).dead_letters == count


async def test_a_handler_that_keeps_raising_is_given_up_after_max_attempts(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    handled = Handled(fail_times=1_000)
    store = new_store()
    with caplog.at_level(logging.ERROR, logger="gptunnel_async.fleet"):
        async with (
            Watcher(client, store, handler=handled, delivery_timeout=0.1, max_attempts=3) as first,
            Watcher(client, new_store(), handler=handled, delivery_timeout=0.1, max_attempts=3),
        ):
            await first.watch(task_id)
            await handled.until(3)
            await settle(lambda: _dead_letters_are(store, 1))
            await asyncio.sleep(1.5)  # past a redelivery's time: there is no fourth attempt
            task = await first.result(task_id, timeout=5)  # the outcome is still there
    assert [d.attempt for d in handled.deliveries] == [1, 2, 3]
    assert [d.redelivered for d in handled.deliveries] == [False, True, True]
    assert task.id == task_id and task.is_done
    status = await store.status()
    assert (status.finished_unhandled, status.dead_letters) == (0, 1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert ["gave up" in r.getMessage() for r in errors] == [False, False, False, True]
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in errors[:3])  # each failure
    failures = [r.getMessage() for r in errors[:3]]
    assert (
        f"raised RuntimeError for task {task_id} (attempt 1 of 3); it comes again in"
        in (failures[0])
    )
    assert failures[2].endswith(
        f"raised RuntimeError for task {task_id} (attempt 3 of 3, the last)"
    )
    reason = "handler attempts failed: 3; the last raised RuntimeError"
    assert reason in errors[-1].getMessage()
    if isinstance(store, RedisStore):
        ((_, letter),) = await store.redis.xrange(store.dead_key)
        assert letter == {b"task": task_id.encode(), b"reason": reason.encode()}
        key = store.task_key(task_id)
        assert await store.redis.hmget(key, "state", "failures") == [b"undelivered", b"3"]
        assert 0 < await store.redis.ttl(key) <= _redis_store.FINISHED_KEPT
        assert await store.redis.xlen(store.stream_key) == 0


class _Hangs:
    """A handler that never returns by itself: it waits until it is cancelled."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.cancelled = 0
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1

    async def reached(self, count: int) -> bool:
        return len(self.deliveries) >= count


async def test_a_handler_past_its_delivery_timeout_is_cancelled_and_delivered_again(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    hangs = _Hangs()
    store = new_store()
    with caplog.at_level(logging.ERROR, logger="gptunnel_async.fleet"):
        async with Watcher(client, store, handler=hangs, delivery_timeout=0.2) as watcher:
            await watcher.watch(task_id)
            await settle(lambda: hangs.reached(2))
            await watcher.close(grace=0)
    assert hangs.cancelled == 2  # the first by its timeout, the second by close()
    assert hangs.most_at_once == 1  # never the same delivery twice at once
    assert [(d.attempt, d.redelivered) for d in hangs.deliveries] == [(1, False), (2, True)]
    timed_out = f"did not return within delivery_timeout for task {task_id} (attempt 1); it comes"
    assert any(timed_out in r.getMessage() for r in caplog.records)


async def test_a_handler_that_never_returns_is_given_up_after_max_attempts(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    hangs = _Hangs()
    store = new_store()
    async with Watcher(
        client, store, handler=hangs, delivery_timeout=0.2, max_attempts=2
    ) as watcher:
        await watcher.watch(task_id)
        await settle(lambda: _dead_letters_are(store, 1))
    assert [d.attempt for d in hangs.deliveries] == [1, 2]
    assert hangs.cancelled == 2
    assert (await store.status()).finished_unhandled == 0
    if isinstance(store, RedisStore):
        ((_, letter),) = await store.redis.xrange(store.dead_key)
        reason = b"handler attempts failed: 2; the last did not return within delivery_timeout"
        assert letter[b"reason"] == reason


async def test_max_attempts_holds_while_cancelled_handlers_still_clean_up(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    # Each attempt is cancelled at its delivery_timeout and then cleans up until the
    # end of the test (it tells the user, writes a row...). Other workers take the
    # delivery over meanwhile: each must find the attempts before it counted, so the
    # fleet gives up after max_attempts, not after one attempt per worker.
    task_id = fake.script_task(steps=[("done", 100)])
    attempts: list[tuple[str, int]] = []
    cleaned_up = asyncio.Event()

    def cleans_up_slowly(worker: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(delivery: Delivery) -> None:
            attempts.append((worker, delivery.attempt))
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await cleaned_up.wait()
                raise

        return handler

    store = new_store()
    watchers = [
        Watcher(
            client,
            new_store(),
            handler=cleans_up_slowly(worker),
            delivery_timeout=0.2,
            max_attempts=2,
            worker=worker,
            concurrency=1,
        )
        for worker in "ABC"
    ]
    async with contextlib.AsyncExitStack() as stack:
        for watcher in watchers:
            await stack.enter_async_context(watcher)
        stack.callback(cleaned_up.set)  # first: the handlers end, then the workers close
        await watchers[0].watch(task_id)
        await settle(lambda: _dead_letters_are(store, 1), seconds=8)
        # Past when a third worker would have taken it over: no third attempt.
        await asyncio.sleep(0.2 + RECLAIM_MARGIN + 0.3)
    assert sorted(attempt for _, attempt in attempts) == [1, 2]
    assert len({worker for worker, _ in attempts}) == 2  # a second worker took it over


async def test_a_handler_a_closing_worker_cancels_is_no_failed_attempt(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    hangs = _Hangs()
    store = new_store()
    async with Watcher(client, store, handler=hangs, max_attempts=1) as deploying:
        await deploying.watch(task_id)
        await settle(lambda: hangs.reached(1))
        await deploying.close(grace=0)  # a deploy, in the middle of the only attempt
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled, delivery_timeout=0.1, max_attempts=1):
        (delivery,) = await handled.until(1)
        await settle(lambda: _unhandled_is(store, 0))
    assert hangs.cancelled == 1
    assert (delivery.attempt, delivery.redelivered) == (1, True)
    assert (await store.status()).dead_letters == 0


async def test_a_handler_a_closing_worker_cancels_is_no_failed_attempt_however_long_it_cleans_up(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    # The worker's close cancels the handler before its delivery_timeout; the cleanup
    # runs past that deadline. That is still no failed attempt: with max_attempts=1, the
    # next worker delivers it, rather than setting it aside as a dead letter.
    task_id = fake.script_task(steps=[("done", 100)])
    started = asyncio.Event()

    async def cleans_up_past_its_deadline(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.6)  # delivery_timeout is 0.3 s
            raise

    store = new_store()
    closing = Watcher(
        client, store, handler=cleans_up_past_its_deadline, delivery_timeout=0.3, max_attempts=1
    )
    async with closing:
        await closing.watch(task_id)
        await started.wait()
        await closing.close(grace=0)
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled, delivery_timeout=0.3, max_attempts=1):
        (delivery,) = await handled.until(1)
        await settle(lambda: _unhandled_is(store, 0))
    assert (delivery.attempt, delivery.redelivered) == (1, True)
    assert (await store.status()).dead_letters == 0


async def test_a_delivery_taken_late_in_a_blocking_read_gets_its_whole_delivery_timeout(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    # A worker with nothing to do reads the store blocking for half a second: tasks
    # finished 0.45 s apart land late in those reads. Each handler needs half its
    # timeout, which a deadline counted from the read's start would not leave it.
    task_ids = [fake.script_task(steps=[("running", 10)]) for _ in range(3)]
    handled: list[str] = []

    async def takes_a_while(delivery: Delivery) -> None:
        await asyncio.sleep(0.25)
        handled.append(delivery.task_id)

    store = new_store()
    policy = PollPolicy(initial=60, max_interval=60, jitter=0.0)  # the resolves finish them
    async with Watcher(
        client, store, handler=takes_a_while, delivery_timeout=0.5, max_attempts=1, policy=policy
    ) as watcher:
        for task_id in task_ids:
            await watcher.watch(task_id)
        for task_id in task_ids:
            await asyncio.sleep(0.45)
            done = Task(id=task_id, status="done", percent=100, result="https://r.example/x.png")
            assert await watcher.resolve(done)
        await settle(lambda: _unhandled_is(store, 0))
    assert sorted(handled) == sorted(task_ids)
    assert (await store.status()).dead_letters == 0


class _Abort(BaseException):
    """What some code raises to get past ``except Exception`` blocks."""


@pytest.mark.parametrize(
    "raised",
    [
        asyncio.CancelledError,  # a library's own, not the worker's: a failure
        _Abort,  # a BaseException of its own: a failure too
    ],
)
async def test_a_handler_that_raises_a_base_exception_of_its_own_fails_its_attempt(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    raised: type[BaseException],
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    calls: list[Delivery] = []

    async def raises(delivery: Delivery) -> None:
        calls.append(delivery)
        raise raised

    store = new_store()
    async with Watcher(
        client, store, handler=raises, delivery_timeout=0.1, max_attempts=2
    ) as watcher:
        await watcher.watch(task_id)
        await settle(lambda: _dead_letters_are(store, 1))
    assert [d.attempt for d in calls] == [1, 2]
    if isinstance(store, RedisStore):
        ((_, letter),) = await store.redis.xrange(store.dead_key)
        reason = f"handler attempts failed: 2; the last raised {raised.__name__}"
        assert letter[b"reason"] == reason.encode()


def _decorated(handler: Callable[[Delivery], Any]) -> Callable[[Delivery], Any]:
    """A decorator as applications write them: the generator function is out of sight."""

    def wrapper(delivery: Delivery) -> Any:
        return handler(delivery)

    return wrapper


async def test_a_handler_that_returns_a_generator_fails_its_attempt(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """A generator function behind a decorator passes the check made when the Watcher is
    made: what it returns fails the attempt (the delivery was acknowledged as handled,
    and its body never ran)."""
    task_id = fake.script_task(steps=[("done", 100)])
    ran: list[Delivery] = []

    async def stray_yield(delivery: Delivery) -> Any:
        ran.append(delivery)
        yield

    store = new_store()
    async with Watcher(
        client, store, handler=_decorated(stray_yield), delivery_timeout=0.1, max_attempts=1
    ) as watcher:
        await watcher.watch(task_id)
        await settle(lambda: _dead_letters_are(store, 1))
    assert ran == []
    if isinstance(store, RedisStore):
        ((_, letter),) = await store.redis.xrange(store.dead_key)
        assert b"raised ConfigurationError" in letter[b"reason"]


async def test_a_close_the_handler_turns_into_another_error_fails_no_attempt(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    started = asyncio.Event()

    async def wraps_cancellation(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("interrupted") from None  # as some libraries do

    store = new_store()
    watcher = Watcher(client, store, handler=wraps_cancellation, max_attempts=1)
    async with watcher:
        await watcher.watch(task_id)
        await asyncio.wait_for(started.wait(), 15)
        await watcher.close(grace=0)
    status = await store.status()
    assert (status.finished_unhandled, status.dead_letters) == (1, 0)
    (entry,) = await store.take("next", 10, 0.0, 0.0)
    assert entry.failures == 0


async def test_a_handler_slow_to_end_after_its_timeout_is_not_run_twice_at_once(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    running, most, attempts = 0, 0, []

    async def slow_to_stop(delivery: Delivery) -> None:
        nonlocal running, most
        attempts.append(delivery.attempt)
        running += 1
        most = max(most, running)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(1.5)  # cleaning up past the reclaim's time
            raise
        finally:
            running -= 1

    store = new_store()
    async with Watcher(client, store, handler=slow_to_stop, delivery_timeout=0.2) as watcher:
        await watcher.watch(task_id)
        await settle(lambda: _attempts_reached(attempts, 2))
        await watcher.close(grace=0)
    assert most == 1
    assert attempts[:2] == [1, 2]


async def _attempts_reached(attempts: list[int], count: int) -> bool:
    return len(attempts) >= count


async def test_an_odd_count_of_failures_starts_again_and_is_read_as_none(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis
) -> None:
    store = RedisStore(redis, name=f"fleet-{next(_names)}")
    task_ids = [fake.script_task(steps=[("done", 100)]) for _ in range(4)]
    async with Watcher(client, store) as poller:
        for task_id in task_ids:
            await poller.watch(task_id)
        await settle(lambda: _unhandled_is(store, 4))
    odd = {task_ids[0]: "abc", task_ids[1]: "-3", task_ids[2]: "1.5", task_ids[3]: "2"}
    for task_id, value in odd.items():
        await redis.hset(store.task_key(task_id), "failures", value)
    entries = {e.task_id: e for e in await store.take("w", 10, 0.0, 60.0)}
    assert [entries[t].failures for t in task_ids] == [0, 0, 0, 2]
    assert [await store.failed(entries[t]) for t in task_ids] == [1, 1, 1, 3]


async def test_a_count_of_a_failure_sent_twice_counts_once_and_another_s_counts(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis
) -> None:
    """redis-py's own retries send a script again when its reply was lost: the count
    went 1 -> 3, and the delivery became a dead letter an attempt early. Another
    worker's failure (it reclaimed the delivery meanwhile) must still count."""
    store = RedisStore(redis, name=f"fleet-{next(_names)}")
    task_id = fake.script_task(steps=[("done", 100)])
    async with Watcher(client, store) as poller:
        await poller.watch(task_id)
        await settle(lambda: _unhandled_is(store, 1))
    key = [store.task_key(task_id)]
    counts = [await store._failed(keys=key, args=[token]) for token in ("one", "one", "two", "two")]
    assert counts == [1, 1, 2, 2]
    (entry,) = await store.take("w", 10, 0.0, 60.0)
    assert (entry.failures, await store.failed(entry), await store.failed(entry)) == (2, 3, 4)


async def test_failed_attempts_are_counted_until_the_delivery_is_acknowledged(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    store = new_store()
    first, second = (fake.script_task(steps=[("done", 100)]) for _ in range(2))
    async with Watcher(client, store) as poller:  # no handler: reads only
        for task_id in (first, second):
            await poller.watch(task_id)
        await settle(lambda: _unhandled_is(store, 2))
    entries = await store.take("w", 10, 0.0, 60.0)
    handled, failing = sorted(entries, key=lambda entry: entry.task_id != first)
    assert (handled.failures, failing.failures) == (0, 0)
    assert [await store.failed(failing) for _ in range(2)] == [1, 2]
    (again,) = [e for e in await store.take("w", 10, 0.0, 0.0) if e.task_id == second]
    assert again.failures == 2
    await store.ack(handled)  # a slow handler returned just before another worker gave up
    assert await store.failed(handled) == 0  # acknowledged: nothing to count
    assert await store.dead_letter(handled, "handler attempts failed: 3") is False
    assert await store.dead_letter(failing, "handler attempts failed: 2") is True
    assert await store.dead_letter(failing, "handler attempts failed: 2") is False
    status = await store.status()
    assert (status.finished_unhandled, status.dead_letters) == (0, 1)
    if isinstance(store, RedisStore):
        ((_, letter),) = await store.redis.xrange(store.dead_key)
        assert letter[b"task"] == second.encode()
        assert await store.redis.hget(store.task_key(first), "state") == b"delivered"
        assert not await store.redis.hexists(store.task_key(first), "failures")


class _DeadLettersFailOnce(MemoryStore):
    """A store whose first ``dead_letter`` meets an outage (Redis away for a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.outages = 1

    async def dead_letter(self, entry: Any, reason: str) -> bool:
        if self.outages:
            self.outages -= 1
            raise StoreUnavailableError("the store is away")
        return await super().dead_letter(entry, reason)


async def test_a_delivery_the_store_could_not_set_aside_is_set_aside_when_next_taken(
    client: GPTunnelClient, fake: FakeGPTunnel
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    handled = Handled(fail_times=1_000)
    store = _DeadLettersFailOnce()
    async with Watcher(
        client, store, handler=handled, delivery_timeout=0.1, max_attempts=1
    ) as watcher:
        await watcher.watch(task_id)
        await settle(lambda: _dead_letters_are(store, 1))
    assert store.outages == 0
    assert len(handled.deliveries) == 1  # not handed to the handler a second time
    assert (await store.status()).finished_unhandled == 0


async def _has_listener(store: WatchStore) -> bool:
    """Whether someone listens to ``store``'s notices: a Redis subscriber to its channel,
    or a queue of the in-process store."""
    if isinstance(store, RedisStore):
        ((_, listeners),) = await store.redis.pubsub_numsub(store.channel)
        return bool(listeners)
    assert isinstance(store, MemoryStore)
    return bool(store._subscribers)


async def _unhandled_is(store: WatchStore, count: int) -> bool:
    return (await store.status()).finished_unhandled == count


async def test_a_worker_killed_inside_its_handler_is_replaced_by_another(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    store = new_store()
    async with Watcher(client, store, worker="poller") as poller:  # no handler: reads only
        await poller.watch(task_id, metadata="m")
        await settle(lambda: _unhandled_is(store, 1))
    (taken,) = await store.take("killed", 10, 0.0, 60.0)  # then it died, unacknowledged
    assert taken.task_id == task_id
    handled = Handled()
    async with Watcher(
        client, new_store(), handler=handled, delivery_timeout=0.3, max_attempts=1
    ):  # a take that never reached a handler is no failed attempt
        (delivery,) = await handled.until(1)
        await settle(lambda: _unhandled_is(store, 0))
    assert (delivery.task_id, delivery.metadata, delivery.redelivered) == (task_id, "m", True)
    assert delivery.attempt == 1


@pytest.mark.parametrize(
    ("end", "ended"),
    [(("done", 100), ("done", 100, 0.0)), (("failed", 90), ("failed", 80, None))],
)
async def test_progress_reaches_whoever_listens_and_ends_with_the_wait_s_outcome(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    new_store: StoreFactory,
    end: tuple[str, int],
    ended: tuple[str, int, float | None],
) -> None:
    steps = [("queued", 0), ("running", 40), ("running", 40), ("running", 80), end]
    task_id = fake.script_task(steps=steps)
    store = new_store()
    listener = Watcher(client, store)
    seen: list[FleetProgress] = []

    async def listen() -> None:
        async for event in listener.progress():
            seen.append(event)

    listening = asyncio.create_task(listen())
    await settle(lambda: _has_listener(store))  # notices sent before would be missed
    async with Watcher(client, new_store()) as poller:
        await poller.watch(task_id, metadata={"message_id": 3})
        with contextlib.suppress(TaskFailedError):
            await poller.result(task_id)
        await settle(lambda: _now(len(seen) == 4))
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening
    assert [(e.status, e.percent, e.ended) for e in seen] == [
        ("queued", 0, False),
        ("running", 40, False),
        ("running", 80, False),
        (*ended[:2], True),
    ]
    assert seen[-1].remaining == ended[2]
    assert {e.metadata["message_id"] for e in seen} == {3}


async def test_a_task_s_held_notice_never_follows_its_end_through_throttle(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    """A notice throttle held (its interval not over) was shown after the handler's
    closing edit: the ended notice now replaces it."""
    steps = [("running", percent) for percent in (10, 20, 30, 40)]
    task_ids = [fake.script_task(steps=[*steps, ("done", 100)]) for _ in range(2)]
    store = new_store()
    shown: dict[str, list[FleetProgress]] = {task_id: [] for task_id in task_ids}

    async def listen() -> None:
        notices = throttle(Watcher(client, store).progress(), every=0.5, per_task=True)
        async for notice in notices:
            shown[notice.task_id].append(notice)

    listening = asyncio.create_task(listen())
    await settle(lambda: _has_listener(store))
    async with Watcher(client, new_store()) as poller:
        for task_id in task_ids:
            await poller.watch(task_id, metadata=task_id)
        for task_id in task_ids:
            await poller.result(task_id)
    await settle(lambda: _now(all(any(n.ended for n in notices) for notices in shown.values())))
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening
    for notices in shown.values():
        assert [n.ended for n in notices] == [False] * (len(notices) - 1) + [True]
        assert (notices[-1].status, notices[-1].percent) == ("done", 100)


async def test_status_shows_what_an_operator_needs(
    fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    store = new_store()
    async with fake.client(requests_per_second=50) as client:
        watcher = Watcher(client, store, lease=30)
        for n in range(3):
            await watcher.watch(fake.script_task(steps=[("running", 1)]), metadata=n)
        await asyncio.sleep(0.05)
        before = await watcher.status()
        claims, _ = await store.claim("w", 1, 30)
        after = await watcher.status()
    assert (before.watched, before.due, before.leased, before.finished_unhandled) == (3, 3, 0, 0)
    assert before.oldest_overdue >= 0.04
    assert len(claims) == 1
    assert (after.watched, after.due, after.leased) == (3, 2, 1)
    assert after.rate == 50


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"family": "video"}, "family"),
        ({"metadata": {1, 2}}, "metadata"),
        ({"metadata": "x" * 20_000}, "metadata"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 4 * 24 * 3600}, "timeout"),
    ],
)
async def test_bad_registrations_are_refused_before_the_store(
    client: GPTunnelClient, options: dict[str, Any], match: str
) -> None:
    watcher = Watcher(client, MemoryStore())
    with pytest.raises(ValueError, match=match):
        await watcher.watch("t-1", **options)
    with pytest.raises(ValueError, match="task_id"):
        await watcher.watch(" ")
    assert (await watcher.status()).watched == 0


@pytest.mark.parametrize(
    "options",
    [{"lease": 0}, {"concurrency": 0}, {"delivery_timeout": -1}, {"handler": 3}, {"policy": 1}],
)
def test_bad_watcher_options_are_refused(client: GPTunnelClient, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Watcher(client, MemoryStore(), **options)


async def test_json_metadata_comes_back_as_json(
    client: GPTunnelClient, fake: FakeGPTunnel, new_store: StoreFactory
) -> None:
    metadata = {"chat": -100123, "text": "готово ✓", "nested": [1, 2.5, None, True]}
    task_id = fake.script_task(steps=[("done", 100)])
    handled = Handled()
    async with Watcher(client, new_store(), handler=handled) as watcher:
        await watcher.watch(task_id, metadata=metadata)
        (delivery,) = await handled.until(1)
    assert delivery.metadata == json.loads(json.dumps(metadata))


class Proxy:
    """A TCP proxy on loopback in front of Redis that can be cut and restored: Redis
    becomes unreachable for real, and comes back. Cut, it keeps its port and resets
    every connection at once, as a host with nothing listening does: were the port let
    go, another program (another test run on the machine) could take it meanwhile, and
    the client would talk to that instead when Redis "returns"."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.up = False
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
        self.up = True

    async def cut(self) -> None:
        self.up = False
        for writer in self._links:
            writer.close()

    async def stop(self) -> None:
        await self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()  # a reset, as a refused connection reads to redis-py
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._links |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_without_redis_watch_raises_and_running_loops_carry_on_when_it_returns(
    client: GPTunnelClient, fake: FakeGPTunnel, redis_server: Any
) -> None:
    proxy = Proxy(redis_server.port)
    await proxy.start()
    redis = Redis(host="127.0.0.1", port=proxy.port, socket_timeout=2, socket_connect_timeout=1)
    store = RedisStore(redis, name=f"fleet-{next(_names)}")
    handled = Handled()
    try:
        async with Watcher(client, store, handler=handled) as watcher:
            await proxy.cut()
            task_id = fake.script_task(steps=[("running", 10), ("done", 100)])
            with pytest.raises(StoreUnavailableError, match="registering a wait"):
                await watcher.watch(task_id)
            await asyncio.sleep(1.0)  # the loops meet the outage and back off
            await proxy.start()  # Redis returns, on the same port
            assert await watcher.watch(task_id, metadata="after") is True
            (delivery,) = await handled.until(1)
        assert (delivery.task_id, delivery.metadata, delivery.outcome) == (task_id, "after", "done")
    finally:
        await redis.aclose()
        await proxy.stop()


async def test_fleet_status_on_the_command_line_and_in_python(
    fake: FakeGPTunnel, redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gptunnel_async.cli import main
    from gptunnel_async.fleet import fleet_status

    budget = RedisBudget(redis, 40, name="ops")
    async with fake.client(budget=budget) as client:
        watcher = Watcher(client, RedisStore(redis, name="ops"))
        for _ in range(2):
            await watcher.watch(fake.script_task(steps=[("running", 1)]))
        await client.get_result(fake.script_task(steps=[("done", 100)]))
        await budget.rate_limited(await budget.acquire(), None)
    status = await fleet_status(redis, name="ops")
    assert (status.watched, status.due, status.leased, status.finished_unhandled) == (2, 2, 0, 0)
    assert status.rate is not None and 20.0 <= status.rate < 40.0  # halved, then climbing
    assert (await fleet_status(redis, name="unused")).rate is None
    code = await asyncio.to_thread(
        main, ["fleet", "status", "--redis", redis_url, "--name", "ops", "--json"]
    )
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["watched"], shown["due"], shown["finished_unhandled"]) == (2, 2, 0)
    assert 20.0 <= shown["rate"] < 40.0
    code = await asyncio.to_thread(main, ["fleet", "status", "--redis", redis_url, "--name", "ops"])
    assert code == 0
    assert "watched               2" in capsys.readouterr().out


def test_fleet_status_without_redis_is_an_error_exit(
    unused_tcp_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from gptunnel_async.cli import main

    code = main(["fleet", "status", "--redis", f"redis://127.0.0.1:{unused_tcp_port}/0"])
    assert code == 4
    assert "store" in capsys.readouterr().err


class DelayRecordingStore(MemoryStore):
    """Records the pause before each task's next read that the watcher saves."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    async def reschedule(
        self, task_id: str, worker: str, delay: float, schedule: str, progress: str | None
    ) -> bool:
        self.delays.append(delay)
        return await super().reschedule(task_id, worker, delay, schedule, progress)


@pytest.mark.parametrize(
    ("instant_on", "paced"),
    [(True, False), (False, True)],
)
async def test_a_watcher_skips_its_pacing_under_instant_waits_as_a_live_wait_does(
    fake: FakeGPTunnel, instant_on: bool, paced: bool
) -> None:
    """docs/testing.md: under instant waits every poll interval is instant; a bot's
    tests of its fleet handler still waited the watcher's real pacing (1 s, 1.5 s ...),
    seconds per task."""
    steps = [("running", 10), ("running", 40), ("done", 100)]
    store = DelayRecordingStore()
    with instant_waits(instant_on):
        async with (
            fake.client(poll_policy=PollPolicy(initial=0.05, max_interval=0.1)) as client,
            Watcher(client, store) as watcher,
        ):
            task_id = fake.script_task(steps=steps)
            await watcher.watch(task_id)
            assert (await watcher.result(task_id, timeout=30)).is_done
    assert len(store.delays) == 2  # the two running reads
    assert all(delay > 0 for delay in store.delays) is paced
    assert all(delay == 0 for delay in store.delays) is not paced


class BlocksRecorded(MemoryStore):
    """A ``MemoryStore`` that notes how long each of the delivery loop's takes may block."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[float] = []

    async def take(self, worker: str, count: int, block: float, reclaim_after: float) -> list[Any]:
        self.blocks.append(block)
        return await super().take(worker, count, block, reclaim_after)


@pytest.mark.parametrize("instant", [True, False])
async def test_an_idle_watchers_take_blocks_briefly_under_instant_waits(
    client: GPTunnelClient, fake: FakeGPTunnel, instant: bool
) -> None:
    """A test's watcher closes at the end of each test; its delivery loop's blocking
    take, which the close waits for, used to hold every such test half a second."""
    store = BlocksRecorded()
    task_id = fake.script_task(steps=[("running", 40), ("done", 100)])
    with instant_waits(instant):
        async with Watcher(client, store, handler=Handled()) as watcher:
            await watcher.watch(task_id)
            await watcher.result(task_id)
    assert store.blocks
    assert set(store.blocks) == {INSTANT_IDLE_POLL if instant else IDLE_POLL}
