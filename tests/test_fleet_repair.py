"""Keys of the fleet's Redis lost apart (an operator's ``DEL``, an eviction, a trim) on a
real redis-server: the store's repair puts back what the task hashes say should be
there, so no wait whose hash is kept is stranded, and nothing is put back twice. And
values too large for the store to read back: never written, the wait ends with a
typed error instead."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gptunnel_async import GPTunnelClient, ServerError, Task
from gptunnel_async._sansio.responses import MAX_ANSWER_BYTES
from gptunnel_async._sansio.waiting import WaitState
from gptunnel_async.fleet import (
    FleetProgress,
    MemoryStore,
    RedisStore,
    RepairingStore,
    StoreDataError,
    Watcher,
    WatchStore,
    _decode,
)
from gptunnel_async.fleet._records import LastRead, Outcome, ReadError, WatchRecord, outcome_error
from gptunnel_async.fleet._redis_store import GROUP, REPAIR_BATCH
from gptunnel_async.fleet._watcher import (
    NOTICE_STATUS_KEPT,
    _clock_step,
    _log_clock_step,
    _notice_json,
    _pacing_json,
    _storable,
)
from gptunnel_async.models import converter
from gptunnel_async.testing import FakeGPTunnel

from .conftest import API_KEY, ScriptedAPI, task_json
from .test_fleet import FAST, Handled

_names = itertools.count()
RECORD = WatchRecord("faceswap", {"chat_id": 1}, 600.0, 0.0).dumps()
DONE = Outcome("expired", None, 600.0).dumps()


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    async with fake.client(poll_policy=FAST) as opened:
        yield opened


@pytest.fixture
def store(redis: Redis) -> RedisStore:
    return RedisStore(redis, name=f"repair-{next(_names)}")


async def _repair_all(store: RedisStore, lease: float = 30.0) -> tuple[int, int]:
    """Repair passes until the SCAN has gone through the database once: the totals."""
    rescheduled = requeued = 0
    for _ in range(1000):
        repaired = await store.repair(lease)
        rescheduled += repaired.rescheduled
        requeued += repaired.requeued
        if store._repair_from == "0":
            return rescheduled, requeued
    raise AssertionError("the SCAN never came back to its start")


async def _due_ids(store: RedisStore) -> set[bytes]:
    return set(await store.redis.zrange(store.due_key, 0, -1))


LOST_SCHEDULE: dict[str, Callable[[RedisStore, Redis], Awaitable[object]]] = {
    "the schedule deleted (an operator's DEL)": lambda s, r: r.delete(s.due_key),
    "the task's member removed (ZREM)": lambda s, r: r.zrem(s.due_key, "t1"),
    "the schedule and the leases deleted (FLUSH of the keys)": lambda s, r: r.delete(
        s.due_key, s.leases_key
    ),
    "the schedule evicted (UNLINK)": lambda s, r: r.unlink(s.due_key),
}


@pytest.mark.parametrize("lose", LOST_SCHEDULE.values(), ids=LOST_SCHEDULE.keys())
async def test_a_watched_task_lost_from_the_schedule_is_put_back_due(
    store: RedisStore,
    redis: Redis,
    lose: Callable[[RedisStore, Redis], Awaitable[object]],
) -> None:
    assert await store.watch("t1", RECORD, 600) is True
    assert await store.watch("t2", RECORD, 600) is True
    await lose(store, redis)
    assert b"t1" not in await _due_ids(store)
    claims, _ = await store.claim("w", 10, 30)
    assert "t1" not in [c.task_id for c in claims]  # stranded: never read again
    await redis.delete(store.due_key, store.leases_key)  # t2 claimed: put back due at once
    await redis.hdel(store.task_key("t2"), "lease", "lease_until")
    assert await _repair_all(store) == (2, 0)
    claims, _ = await store.claim("w", 10, 30)
    assert sorted(c.task_id for c in claims) == ["t1", "t2"]
    assert await _repair_all(store) == (0, 0)  # both are in the schedule again: no more


async def test_a_leased_task_lost_from_the_schedule_is_due_when_its_lease_ends(
    store: RedisStore, redis: Redis
) -> None:
    """Due at once, it would be read by a second worker while its lease holder reads it."""
    await store.watch("t1", RECORD, 600)
    await store.claim("w#1", 10, 300)
    lease_end = await redis.zscore(store.due_key, "t1")
    await redis.delete(store.due_key, store.leases_key)
    assert await _repair_all(store, lease=5) == (1, 0)
    assert await redis.zscore(store.due_key, "t1") == lease_end
    assert await redis.zscore(store.leases_key, "t1") == lease_end
    assert await store.claim("w#2", 10, 300) == ([], pytest.approx(300, abs=5))
    assert await store.reschedule("t1", "w#1", 0, "{}", None) is True  # the holder's save


ODD_LEASE_ENDS = {
    "none (claimed by an older version)": None,
    "not a number": "soon",
    "NaN": "nan",
    "past a day ahead": "1e300",
}


@pytest.mark.parametrize("lease_end", ODD_LEASE_ENDS.values(), ids=ODD_LEASE_ENDS.keys())
async def test_a_leased_task_whose_lease_end_is_unreadable_waits_out_a_lease(
    store: RedisStore, redis: Redis, lease_end: str | None
) -> None:
    await store.watch("t1", RECORD, 600)
    await store.claim("w#1", 10, 300)
    key = store.task_key("t1")
    await (
        redis.hdel(key, "lease_until")
        if lease_end is None
        else redis.hset(key, "lease_until", lease_end)
    )
    await redis.delete(store.due_key, store.leases_key)
    assert await _repair_all(store, lease=60) == (1, 0)
    (now, _) = await redis.time()
    due = await redis.zscore(store.due_key, "t1")
    assert due is not None and now + 50 < due < now + 70
    assert await store.claim("w#2", 10, 300) == ([], pytest.approx(60, abs=10))


LOST_QUEUE: dict[str, Callable[[RedisStore, Redis], Awaitable[object]]] = {
    "the stream deleted": lambda s, r: r.delete(s.stream_key),
    "the stream trimmed to nothing": lambda s, r: r.xtrim(s.stream_key, maxlen=0),
}


@pytest.mark.parametrize("lose", LOST_QUEUE.values(), ids=LOST_QUEUE.keys())
@pytest.mark.parametrize("taken", [False, True], ids=["not yet taken", "taken"])
async def test_a_finished_task_lost_from_the_queue_is_queued_again(
    store: RedisStore,
    redis: Redis,
    lose: Callable[[RedisStore, Redis], Awaitable[object]],
    taken: bool,
) -> None:
    await store.watch("t1", RECORD, 600)
    assert await store.finish("t1", DONE) is True
    if taken:
        assert len(await store.take("w", 10, 0, 60)) == 1
    await lose(store, redis)
    assert await store.take("w", 10, 0, 60) == []  # stranded: never delivered
    assert await _repair_all(store) == (0, 1)
    (entry,) = await store.take("w", 10, 0, 60)
    assert entry.task_id == "t1" and entry.outcome is not None
    assert await _repair_all(store) == (0, 0)  # its new entry is there: not queued twice
    await store.ack(entry)
    assert await redis.hget(store.task_key("t1"), "state") == b"delivered"
    assert await _repair_all(store) == (0, 0)


@pytest.mark.parametrize("lose", LOST_QUEUE.values(), ids=LOST_QUEUE.keys())
async def test_a_delivery_a_handler_holds_is_never_delivered_twice(
    store: RedisStore,
    redis: Redis,
    lose: Callable[[RedisStore, Redis], Awaitable[object]],
) -> None:
    """A repair pass while a worker's handler runs on a task whose entry was lost queues
    it again; once the handler acknowledges it, that new entry is let go, not handed
    to a second worker's handler."""
    await store.watch("t1", RECORD, 600)
    await store.finish("t1", DONE)
    (held,) = await store.take("w#1", 10, 0, 60)
    await lose(store, redis)
    await _repair_all(store)
    await store.ack(held)  # the handler returned
    assert await redis.hget(store.task_key("t1"), "state") == b"delivered"
    assert await store.take("w#2", 10, 0, 0) == []
    assert await store.take("w#2", 10, 0, 0) == []
    assert await redis.xlen(store.stream_key) == 0
    assert await _repair_all(store) == (0, 0)


@pytest.mark.parametrize("state", ["delivered", "undelivered", "dead"])
async def test_an_entry_of_a_task_no_longer_finished_is_let_go_not_delivered(
    store: RedisStore, redis: Redis, state: str
) -> None:
    """Its delivery is over (acknowledged, given up, set aside): an entry that still
    names it (queued again by a repair, written by hand) is acknowledged, not handed
    to a handler a second time."""
    await store.watch("t1", RECORD, 600)
    await store.finish("t1", DONE)
    await redis.hset(store.task_key("t1"), "state", state)
    assert await store.take("w", 10, 0, 0) == []
    assert await redis.xlen(store.stream_key) == 0
    assert await redis.xlen(store.dead_key) == 0  # no dead letter: nothing was wrong


async def test_the_entry_of_one_finished_task_deleted_queues_that_one_alone(
    store: RedisStore, redis: Redis
) -> None:
    for task_id in ("t1", "t2", "t3"):
        await store.watch(task_id, RECORD, 600)
        await store.finish(task_id, DONE)
    entry_id = await redis.hget(store.task_key("t2"), "entry")
    assert await redis.xdel(store.stream_key, entry_id) == 1
    assert await _repair_all(store) == (0, 1)
    entries = await store.take("w", 10, 0, 60)
    assert sorted(e.task_id for e in entries) == ["t1", "t2", "t3"]


async def test_nothing_lost_is_nothing_repaired(store: RedisStore, redis: Redis) -> None:
    await store.watch("due", RECORD, 600)
    await store.watch("leased", RECORD, 600)
    await store.watch("gone", RECORD, 600)
    await store.claim("w", 1, 30)  # one of them leased
    await store.watch("finished", RECORD, 600)
    await store.finish("finished", DONE)
    await store.watch("delivered", RECORD, 600)
    await store.finish("delivered", DONE)
    (entry,) = [e for e in await store.take("w", 10, 0, 60) if e.task_id == "delivered"]
    await store.ack(entry)
    await redis.delete(store.task_key("gone"))  # a lost hash: nothing to put back
    before = {k: await redis.dump(k) for k in (store.due_key, store.leases_key, store.stream_key)}
    assert await _repair_all(store) == (0, 0)
    after = {k: await redis.dump(k) for k in before}
    assert after == before


@pytest.mark.parametrize("name", ["f[12]", "f?", "f*", "f\\1"])
async def test_a_name_with_the_globs_characters_repairs_its_own_tasks_alone(
    redis: Redis, name: str
) -> None:
    """The SCAN pattern matches the store's own keys literally: unescaped, ``f[12]``
    matched ``f1``'s tasks, and put their ids into its own schedule."""
    mine, other = RedisStore(redis, name=name), RedisStore(redis, name="f1")
    await other.watch("theirs", RECORD, 600)
    await redis.delete(other.due_key)
    assert await _repair_all(mine) == (0, 0)
    assert await _due_ids(mine) == set()
    await mine.watch("mine", RECORD, 600)
    await redis.delete(mine.due_key)
    assert await _repair_all(mine) == (1, 0)
    assert await _due_ids(mine) == {b"mine"}
    assert await _repair_all(other) == (1, 0)


async def test_each_pass_is_bounded_and_goes_on_where_the_last_stopped(
    store: RedisStore, redis: Redis
) -> None:
    await redis.mset({f"app:{i}": "x" for i in range(4 * REPAIR_BATCH)})
    for task_id in ("t1", "t2"):
        await store.watch(task_id, RECORD, 600)
    await redis.delete(store.due_key)
    await store.repair(30)
    passes = 1
    # One pass did not go through the whole database: its SCAN cursor is not back at 0.
    # (Whether t1 and t2 were among the keys it saw depends on where SCAN puts them.)
    assert store._repair_from != "0"
    while store._repair_from != "0":  # the passes after it go on to the end
        await store.repair(30)
        passes += 1
        assert passes < 50
    assert passes > 1
    assert await _due_ids(store) == {b"t1", b"t2"}


async def test_a_worker_puts_a_stranded_wait_back_and_delivers_it(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    store: RedisStore,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = fake.script_task(steps=[("running", 50), ("done", 100)])
    assert await Watcher(client, store).watch(task_id, metadata={"chat_id": 7}) is True
    await redis.delete(store.due_key)  # before any worker read it
    handled = Handled()
    with caplog.at_level(logging.WARNING, "gptunnel_async.fleet"):
        async with Watcher(client, store, handler=handled):
            (delivery,) = await handled.until(1)
    assert (delivery.task_id, delivery.outcome, delivery.metadata) == (
        task_id,
        "done",
        {"chat_id": 7},
    )
    assert any("missing from the store's schedule" in r.getMessage() for r in caplog.records)


async def test_a_worker_delivers_a_finished_task_whose_stream_was_deleted(
    client: GPTunnelClient, fake: FakeGPTunnel, store: RedisStore, redis: Redis
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    watcher = Watcher(client, store)
    await watcher.watch(task_id)
    assert await watcher.resolve(await client.faceswap.result(task_id)) is True
    await redis.delete(store.stream_key)  # the group goes with it
    handled = Handled()
    async with Watcher(client, store, handler=handled):
        (delivery,) = await handled.until(1)
    assert delivery.task_id == task_id and delivery.outcome == "done"
    groups = await redis.xinfo_groups(store.stream_key)
    assert [g["name"] for g in groups] == [GROUP.encode()]


def test_the_redis_store_repairs_and_the_memory_store_needs_not() -> None:
    assert callable(getattr(RedisStore, "repair", None))
    assert not hasattr(MemoryStore, "repair")
    assert RepairingStore.repair.__doc__


# -- outcomes too large for the store -------------------------------------------------


def _done(result: str, task_id: str = "big") -> Task:
    return converter.structure(
        {"id": task_id, "status": "done", "percent": 100, "result": result}, Task
    )


def _sized(length: int) -> Outcome:
    """A done outcome whose JSON is ``length`` bytes long."""
    base = len(Outcome("done", _done("")).dumps())
    outcome = Outcome("done", _done("x" * (length - base)))
    assert len(outcome.dumps()) == length
    return outcome


@pytest.mark.parametrize(
    ("length", "kept"),
    [
        (1000, True),
        (_decode.MAX_STORED_BYTES - 1, True),
        (_decode.MAX_STORED_BYTES, True),
        (_decode.MAX_STORED_BYTES + 1, False),
        (3 * _decode.MAX_STORED_BYTES, False),
    ],
)
def test_an_outcome_is_stored_as_it_is_up_to_what_every_reader_takes(
    length: int, kept: bool, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = _sized(length)
    stored = _storable("big", outcome)
    read = _decode.outcome(stored)  # what any worker reads back: never a dead letter
    if kept:
        assert read == outcome and not caplog.records
        return
    assert (read.kind, read.task, read.error and read.error.kind) == (
        "error",
        None,
        "StoreDataError",
    )
    assert f"is {length} bytes" in read.error.message
    assert f"over the {_decode.MAX_STORED_BYTES} bytes" in read.error.message
    error = outcome_error("big", read.kind, read.task, read.timeout, read.error.rebuilt())
    assert isinstance(error, StoreDataError) and "client.<family>.result" in str(error)
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_a_pacing_too_large_to_read_back_drops_the_last_task_alone() -> None:
    state = WaitState.start("big", FAST, 0.0)
    error = ReadError.of(ServerError("a 503", status_code=503))
    small = _pacing_json(state, LastRead(_done("x"), error))
    assert _decode.last_read(_decode.stored_object(small, "p")) == LastRead(_done("x"), error)
    large = _pacing_json(state, LastRead(_done("я" * _decode.MAX_STORED_BYTES), error))
    assert len(large) <= _decode.MAX_STORED_BYTES
    saved = _decode.stored_object(large, "the saved pacing")  # read back, not paced afresh
    assert _decode.schedule(saved, "big") == state
    assert _decode.last_read(saved) == LastRead(None, error)


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_a_resolved_task_too_large_to_store_is_delivered_as_a_store_data_error(
    client: GPTunnelClient,
    redis: Redis,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Non-ASCII text is stored escaped (six bytes a character): a 3 MB result was
    stored, then set aside at its take as a dead letter "not one it wrote" (Redis), or
    refused by resolve() with an untyped-looking failure of the store (memory)."""
    shared: WatchStore = (
        RedisStore(redis, name=f"big-{next(_names)}") if kind == "redis" else MemoryStore()
    )
    handled = Handled()
    async with Watcher(client, shared, handler=handled) as watcher:
        await watcher.watch("big")
        with caplog.at_level(logging.WARNING, "gptunnel_async.fleet"):
            assert await watcher.resolve(_done("я" * 1_500_000)) is True
        (delivery,) = await handled.until(1)
        assert delivery.outcome == "error" and delivery.task is None
        assert isinstance(delivery.error, StoreDataError)
        assert "over the 8388608 bytes" in str(delivery.error)
        with pytest.raises(StoreDataError, match="over the 8388608 bytes"):
            await watcher.result("big", timeout=5)
        assert (await watcher.status()).dead_letters == 0
    assert any("its wait ends as an error" in r.getMessage() for r in caplog.records)


async def test_a_read_task_too_large_to_store_is_delivered_as_a_store_data_error(
    api: ScriptedAPI, redis: Redis
) -> None:
    """The API's answer is UTF-8, at most 4 MiB; stored, its text beyond ASCII takes
    six bytes a character: a done task's 3.8 MB answer became a 11 MB outcome."""
    body = json.dumps(
        task_json("done", percent=100, id="read-big", result="я" * 1_900_000), ensure_ascii=False
    )
    assert len(body.encode()) < MAX_ANSWER_BYTES
    api.script((200, body, {"Content-Type": "application/json"}))
    store = RedisStore(redis, name=f"big-{next(_names)}")
    handled = Handled()
    async with (
        GPTunnelClient(api_key=API_KEY, base_url=api.base_url, poll_policy=FAST) as client,
        Watcher(client, store, handler=handled) as watcher,
    ):
        await watcher.watch("read-big")
        (delivery,) = await handled.until(1)
    assert delivery.outcome == "error" and isinstance(delivery.error, StoreDataError)
    assert "the task's final state (done)" in str(delivery.error)
    assert (await store.status()).dead_letters == 0


PHASES = ("due", "leased", "finished", "taken", "delivered")
LOSSES = ("DEL due", "DEL leases", "DEL finished", "ZREM due", "XDEL entry")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    phases=st.lists(st.sampled_from(PHASES), min_size=1, max_size=6),
    losses=st.lists(st.tuples(st.sampled_from(LOSSES), st.integers(0, 5)), min_size=1, max_size=6),
)
async def test_whatever_index_is_lost_one_full_repair_makes_every_hash_reachable_once(
    redis: Redis, phases: list[str], losses: list[tuple[str, int]]
) -> None:
    """Each watched hash is in the schedule again (a leased one when its lease ends),
    each finished one has exactly one entry in the stream; a second repair finds
    nothing, and nothing delivered is queued again."""
    store = RedisStore(redis, name=f"prop-{next(_names)}")
    ids = [f"t{i}" for i in range(len(phases))]
    # Taken (and acknowledged) ones first: a take hands over every new entry.
    for task_id, phase in sorted(
        zip(ids, phases, strict=True), key=lambda p: p[1] not in ("taken", "delivered")
    ):
        await store.watch(task_id, RECORD, 600)
        if phase == "leased":
            await redis.zadd(store.due_key, {task_id: 0})  # due before the others
            assert [c.task_id for c in (await store.claim("w", 1, 300))[0]] == [task_id]
        elif phase != "due":
            assert await store.finish(task_id, DONE) is True
        if phase in ("taken", "delivered"):
            (entry,) = await store.take("w", 100, 0, 60)
            if phase == "delivered":
                await store.ack(entry)
    for loss, which in losses:
        task_id = ids[which % len(ids)]
        if loss.startswith("DEL"):
            key = {"due": store.due_key, "leases": store.leases_key}.get(
                loss.split()[1], store.stream_key
            )
            await redis.delete(key)
        elif loss == "ZREM due":
            await redis.zrem(store.due_key, task_id)
        elif (entry_id := await redis.hget(store.task_key(task_id), "entry")) is not None:
            await redis.xdel(store.stream_key, entry_id)
    await _repair_all(store)
    assert await _repair_all(store) == (0, 0)
    queued = [f[b"task"] for _, f in await redis.xrange(store.stream_key)]
    for task_id, phase in zip(ids, phases, strict=True):
        held = await redis.hmget(store.task_key(task_id), ["state", "lease_until"])
        due = await redis.zscore(store.due_key, task_id)
        if phase in ("due", "leased"):
            assert held[0] == b"watching" and due is not None
            assert queued.count(task_id.encode()) == 0
            if phase == "leased":
                assert due == float(held[1])
                assert await redis.zscore(store.leases_key, task_id) == due
        else:
            assert due is None
            expected = 0 if phase == "delivered" else 1
            assert queued.count(task_id.encode()) == expected


BIG_METADATA = {"note": "x" * (16 * 1024 - 20)}  # about what watch() takes at most


@given(
    status=st.one_of(
        st.text(max_size=50),
        st.integers(0, 40_000).map(lambda n: "я" * n),
        st.integers(0, 40_000).map(lambda n: "\U0001f600" * n),
    ),
    metadata=st.sampled_from([None, {"chat_id": 1}, BIG_METADATA]),
)
def test_every_progress_notice_is_one_its_listeners_read(status: str, metadata: object) -> None:
    """A server's status is published as it came: one of tens of thousands of
    characters beyond ASCII (six or twelve bytes each, escaped) made a notice over
    the 64 KiB a listener reads, skipped by every ``progress()`` as odd."""
    notice = FleetProgress("t" * 256, status, 40, metadata, 12.5)
    published = _notice_json(notice)
    read = _decode.notice(published)
    assert isinstance(read, FleetProgress)
    if len(notice.dumps()) <= _decode.MAX_SMALL_BYTES:
        assert read == notice
    else:
        assert read == attrs.evolve(notice, status=read.status)
        assert len(read.status) <= NOTICE_STATUS_KEPT and status.startswith(read.status[:50])


async def test_an_entry_id_taken_by_another_task_s_entry_is_no_entry_of_this_one(
    store: RedisStore, redis: Redis
) -> None:
    """A stream deleted and made anew within the same millisecond (or after Redis's
    clock went back) gives its entries ids the lost entries had: one naming another
    task kept this task from being queued again."""
    for task_id in ("t1", "t2"):
        await store.watch(task_id, RECORD, 600)
        await store.finish(task_id, DONE)
    old = await redis.hget(store.task_key("t2"), "entry")
    await redis.delete(store.stream_key)
    await redis.xadd(store.stream_key, {"task": "t1"}, id=old)  # t1's entry, t2's old id
    await redis.hset(store.task_key("t1"), "entry", old)
    assert await _repair_all(store) == (0, 1)
    queued = [f[b"task"] for _, f in await redis.xrange(store.stream_key)]
    assert sorted(queued) == [b"t1", b"t2"]


# -- the store's clock ----------------------------------------------------------------


async def test_a_repair_pass_tells_redis_s_clock(store: RedisStore, redis: Redis) -> None:
    seconds, microseconds = await redis.time()
    repaired = await store.repair(30)
    assert repaired.clock is not None
    assert seconds + microseconds / 1e6 <= repaired.clock < seconds + 60


CLOCKS = {
    # name: (store's clock then and now, worker's then and now, lease, step, logged)
    "both clocks run alike": ((100.0, 105.0), (7.0, 12.0), 30.0, 0.0, None),
    "a round trip's jitter": ((100.0, 105.9), (7.0, 12.0), 30.0, 0.9, None),
    "Redis's clock stepped 7 s forward": ((100.0, 112.0), (7.0, 12.0), 30.0, 7.0, "more"),
    "within a fifth of a long lease": ((100.0, 112.0), (7.0, 12.0), 300.0, 7.0, None),
    "a short lease: a second is noted": ((100.0, 106.5), (7.0, 12.0), 2.0, 1.5, "more"),
    "Redis's clock stepped an hour back": ((100.0, -3495.0), (7.0, 12.0), 30.0, -3600.0, "less"),
    "this worker paused 40 s": ((100.0, 145.0), (7.0, 12.0), 30.0, 40.0, "more"),
}


@pytest.mark.parametrize(
    ("store_clock", "local_clock", "lease", "step", "logged"),
    CLOCKS.values(),
    ids=CLOCKS.keys(),
)
def test_a_step_of_the_store_s_clock_past_a_fifth_of_the_lease_is_logged(
    store_clock: tuple[float, float],
    local_clock: tuple[float, float],
    lease: float,
    step: float,
    logged: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert _clock_step(store_clock, local_clock) == pytest.approx(step)
    with caplog.at_level(logging.WARNING, "gptunnel_async.fleet"):
        _log_clock_step((store_clock[0], local_clock[0]), (store_clock[1], local_clock[1]), lease)
    lines = [r.getMessage() for r in caplog.records]
    if logged is None:
        assert lines == []
    else:
        (line,) = lines
        assert f"moved {abs(step):.1f}s {logged} than this worker's" in line
