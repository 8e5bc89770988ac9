"""Odd entries in the fleet's Redis (another version's record or outcome, an operator's
HSET, a cut write, odd notices) on a real redis-server: the entry is set aside as a dead
letter, logged once, never claimed again, and every good task behind it is read and
delivered; ``result()`` and ``progress()`` raise nothing but typed errors. And careless
constructor arguments of the fleet's classes are ConfigurationErrors."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gptunnel_async import (
    GPTunnelClient,
    GPTunnelError,
    PollPolicy,
    ServerError,
    Task,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async._sansio.waiting import WaitState
from gptunnel_async.errors import ConfigurationError, StoreDataError
from gptunnel_async.fleet import (
    FleetProgress,
    MemoryStore,
    RedisBudget,
    RedisStore,
    Watcher,
    _decode,
    fleet_status,
)
from gptunnel_async.fleet._records import Entry, Outcome, WatchRecord
from gptunnel_async.fleet._redis_store import GROUP, _cursor
from gptunnel_async.testing import FakeGPTunnel

from .test_fleet import FAST, Handled, _now, settle

_names = itertools.count()


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    async with fake.client(poll_policy=FAST) as opened:
        yield opened


@pytest.fixture
def store(redis: Redis) -> RedisStore:
    return RedisStore(redis, name=f"odd-{next(_names)}")


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


ODD_RECORDS: dict[str, dict[str, Any]] = {
    "a record without its timeout (another version's)": {
        "record": '{"family": "faceswap", "metadata": {}}'
    },
    "a family this version lacks": {"record": '{"family": "video", "metadata": 1, "timeout": 9}'},
    "a record that is not JSON (cut short)": {"record": '{"family": "faces'},
    "a record that is not UTF-8": {"record": b'{"family": "\xff\xfe"}'},
    "a deadline that is not a number": {"deadline": "tomorrow"},
    "a deadline that is NaN": {"deadline": "nan"},
    "no record at all": {"record": None},
    "metadata nested deeper than watch() takes (JSON parses it)": {
        "record": '{"family": "faceswap", "timeout": 9, "metadata": %s}' % ("[" * 900 + "]" * 900)
    },
}


@pytest.mark.parametrize("odd", ODD_RECORDS.values(), ids=ODD_RECORDS)
async def test_an_odd_record_is_set_aside_and_the_tasks_behind_it_are_delivered(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    caplog: pytest.LogCaptureFixture,
    odd: dict[str, Any],
) -> None:
    caplog.set_level(logging.WARNING, logger="gptunnel_async.fleet")
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    bad = fake.script_task(steps=[("done", 100)])
    await watcher.watch(bad, metadata="bad")  # first due: the first claimed
    for field, value in odd.items():
        if value is None:
            await redis.hdel(store.task_key(bad), field)
        else:
            await redis.hset(store.task_key(bad), field, value)
    good = [fake.script_task(steps=[("running", 50), ("done", 100)]) for _ in range(3)]
    for task_id in good:
        await watcher.watch(task_id, metadata="good")
    async with watcher:
        deliveries = await handled.until(3)
        await settle(lambda: _dead_letters(store, 1))
        later = fake.script_task(steps=[("done", 100)])
        await watcher.watch(later)  # the loops still run
        await handled.until(4)
        assert watcher._running is not None and not watcher._running.done()
    assert sorted(d.task_id for d in deliveries) == sorted([*good, later])
    status = await store.status()
    assert (status.watched, status.due, status.leased, status.dead_letters) == (0, 0, 0, 1)
    letters: Any = await redis.xrange(store.dead_key)
    ((_, letter),) = letters
    assert letter[b"task"] == bad.encode() and letter[b"reason"]
    assert await redis.hget(store.task_key(bad), "state") == b"dead"
    assert len(_logged(caplog, "set aside as a dead letter")) == 1  # once, not per claim
    with pytest.raises(StoreDataError, match="set aside as a dead letter"):
        await watcher.result(bad, timeout=5)  # at once, not after its timeout


async def _has_logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return bool(_logged(caplog, text))


async def _dead_letters(store: RedisStore, count: int) -> bool:
    return (await store.status()).dead_letters == count


ODD_OUTCOMES: dict[str, str | bytes] = {
    "a model this version lacks": json.dumps(
        {"kind": "done", "model": "VideoTask", "task": {}, "timeout": 0}
    ),
    "a kind this version lacks": json.dumps(
        {"kind": "cancelled", "model": None, "task": None, "timeout": 0}
    ),
    "not JSON": "{",
    "not UTF-8": b"\xff\xfe",
    "done without its task": json.dumps(
        {"kind": "done", "model": None, "task": None, "timeout": 0}
    ),
}


@pytest.mark.parametrize("odd", ODD_OUTCOMES.values(), ids=ODD_OUTCOMES)
async def test_an_odd_outcome_is_set_aside_the_deliveries_go_on_and_result_is_typed(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    odd: str | bytes,
) -> None:
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    await watcher.watch("written-by-another-version")
    await store._finish(  # as another version would finish it: first in the stream
        keys=[
            store.task_key("written-by-another-version"),
            store.due_key,
            store.leases_key,
            store.stream_key,
        ],
        args=["written-by-another-version", odd, store.channel],
    )
    good = [fake.script_task(steps=[("done", 100)]) for _ in range(3)]
    for task_id in good:
        await watcher.watch(task_id)
    async with watcher:
        deliveries = await handled.until(3)
        await settle(lambda: _dead_letters(store, 1))
    assert sorted(d.task_id for d in deliveries) == sorted(good)
    assert (await store.status()).finished_unhandled == 0
    with pytest.raises(StoreDataError, match="outcome") as caught:
        await watcher.result("written-by-another-version", timeout=5)
    assert isinstance(caught.value, GPTunnelError)


SET_ASIDE: dict[str, tuple[str, str]] = {
    "its record": ("record", '{"family": "video", "metadata": 1, "timeout": 9}'),
    "its outcome": ("outcome", '{"kind": "cancelled", "model": null, "task": null}'),
}
"""What a newer version may write that this one sets a task aside for (field, value)."""


@pytest.mark.parametrize("odd", SET_ASIDE.values(), ids=SET_ASIDE)
async def test_a_dead_letter_s_task_may_be_watched_again_and_is_delivered(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    odd: tuple[str, str],
) -> None:
    """The documented way back for a dead letter (a newer version's entry): ``watch()``
    once every worker reads it. It returned False, "registered already", registered
    nothing, and the wait was lost until its hash expired a day later."""
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    task_id = fake.script_task(steps=[("done", 100)])
    field, value = odd
    await watcher.watch(task_id, metadata="first")
    if field == "outcome":  # finished by another version, first in the stream
        await store._finish(
            keys=[store.task_key(task_id), store.due_key, store.leases_key, store.stream_key],
            args=[task_id, value, store.channel, ""],
        )
    else:
        await redis.hset(store.task_key(task_id), field, value)
    async with watcher:
        await settle(lambda: _dead_letters(store, 1))
        assert await redis.hget(store.task_key(task_id), "state") == b"dead"
        assert await watcher.watch(task_id, metadata="again") is True
        assert await watcher.watch(task_id, metadata="twice") is False  # once, as ever
        (delivery,) = await handled.until(1)
    assert (delivery.task_id, delivery.outcome, delivery.metadata) == (task_id, "done", "again")
    assert (await watcher.result(task_id, timeout=5)).id == task_id
    assert (await store.status()).dead_letters == 1  # the letter stays, for the record


async def test_stream_entries_without_a_readable_task_id_are_set_aside(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    await store._ensure_group()
    await redis.xadd(store.stream_key, {"something": "else"})
    await redis.xadd(store.stream_key, {"task": b"\xff\xfe"})
    task_id = fake.script_task(steps=[("done", 100)])
    await watcher.watch(task_id)
    async with watcher:
        (delivery,) = await handled.until(1)
        await settle(lambda: _dead_letters(store, 2))
    assert delivery.task_id == task_id
    assert (await store.status()).finished_unhandled == 0


def _impossible_pacing(task_id: str) -> str:
    """A saved pacing of the right types whose line fit counts 10**400 reads: loaded,
    it raised OverflowError at every read (an ERROR traceback each lease)."""
    saved = WaitState.start(task_id, FAST, now=0.0).to_json()
    saved["pace"]["fit"] = {"base": 0, "origin": 1.0, "n": 10**400, "st": 1.0, "sp": 1.0}
    return json.dumps(saved)


def _another_task_s_pacing(task_id: str) -> str:
    """A good saved pacing, of another task (a hash copied by hand): resumed, its wait
    sent progress notices under that task's id, to the metadata of this one."""
    return json.dumps(WaitState.start(f"not-{task_id}", FAST, now=0.0).to_json())


@pytest.mark.parametrize(
    "schedule",
    [lambda _: '{"format": "from the future"}', _impossible_pacing, _another_task_s_pacing],
    ids=["another format", "values no wait has", "another task's"],
)
async def test_an_odd_saved_pacing_only_costs_the_pacing(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    schedule: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    task_id = fake.script_task(steps=[("running", 10), ("running", 60), ("done", 100)])
    await watcher.watch(task_id)
    await redis.hset(store.task_key(task_id), "schedule", schedule(task_id))
    notices: list[FleetProgress] = []

    async def listen() -> None:
        async for notice in watcher.progress():
            notices.append(notice)

    listening = asyncio.create_task(listen())
    await settle(lambda: _subscribed(redis, store.channel))
    with caplog.at_level(logging.WARNING, logger="gptunnel_async.fleet"):
        async with watcher:
            (delivery,) = await handled.until(1)
            await settle(lambda: _now(any(notice.ended for notice in notices)))
    listening.cancel()
    assert (delivery.task_id, delivery.outcome) == (task_id, "done")
    assert notices and {notice.task_id for notice in notices} == {task_id}
    assert (await store.status()).dead_letters == 0
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, message in logged if "paced afresh" in message] == ["WARNING"]
    assert not [message for level, message in logged if level == "ERROR"]


def _key_in_pacing(where: str, key: str, task_id: str) -> str:
    """A saved pacing that quotes ``key`` where its loader's error shows a value."""
    saved = WaitState.start(task_id, FAST, now=0.0).to_json()
    if where == "task_id":  # another task's, says the loader, naming it
        saved["task_id"] = key
    else:  # not a strategy, says the loader, quoting it
        saved["policy"]["strategy"] = f"psychic {key}"
    return json.dumps(saved)


@pytest.mark.parametrize("where", ["task_id", "strategy"])
async def test_a_saved_pacing_s_warning_masks_the_key(
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    """The warning that a saved pacing was set aside quoted what the loader refused (a
    task id, a strategy): the API key an operator's edit or a hostile write put there
    went into the log as it was."""
    async with fake.client(poll_policy=FAST) as client:
        key = client._transport._api_key
        handled = Handled()
        watcher = Watcher(client, store, handler=handled)
        task_id = fake.script_task(steps=[("running", 10), ("done", 100)])
        await watcher.watch(task_id)
        saved = _key_in_pacing(where, key, task_id)
        await redis.hset(store.task_key(task_id), "schedule", saved)
        with caplog.at_level(logging.WARNING, logger="gptunnel_async.fleet"):
            async with watcher:
                (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"
    logged = _logged(caplog, "paced afresh")
    assert logged and all(key not in line and "***" in line for line in logged)


async def test_what_the_store_and_the_watcher_log_of_stored_values_masks_the_key(
    fake: FakeGPTunnel, redis: Redis, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The store holds no key, yet its dead letter's warning quoted a record's family,
    and the watcher's lines named a task id read from the schedule: a key a hand edit
    or a hostile write put there went into the log as it was, and to the handler as
    the delivery's task id."""
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    async with fake.client(poll_policy=FAST) as client:
        key = client._transport._api_key
        handled = Handled()
        watcher = Watcher(client, store, handler=handled)
        await store.watch(key, WatchRecord("faceswap", None, 1.0).dumps(), 1.0)
        bad = fake.script_task(steps=[("done", 100)])
        await watcher.watch(bad)
        family = json.dumps({"family": key, "metadata": 1, "timeout": 5})
        await redis.hset(store.task_key(bad), "record", family)
        async with watcher:
            (delivery,) = await handled.until(1)
    assert (delivery.outcome, delivery.task_id) == ("expired", "***")  # the handler's
    dead_letter = _logged(caplog, "set aside as a dead letter")
    assert dead_letter and all("***" in line for line in dead_letter)
    assert _logged(caplog, "reading task ***")
    assert not [record for record in caplog.records if key in record.getMessage()]


ODD_NOTICES: list[str | bytes] = [
    "not json",
    "[1, 2]",
    '{"kind": "progress", "task_id": "x"}',
    '{"kind": "progress", "task_id": "x", "status": "running", "percent": "40"}',
    '{"kind": "finished"}',
    b"\xff\xfe",
    '{"kind": "something-newer", "task_id": "x"}',
    '{"kind": "progress", "task_id": "x", "status": "running", "percent": 40, "metadata": %s}'
    % ("[" * 900 + "]" * 900),
]


async def _subscribed(redis: Redis, channel: str) -> bool:
    return dict(await redis.pubsub_numsub(channel)).get(channel.encode(), 0) > 0


async def test_progress_skips_odd_notices_and_still_yields_good_ones(
    client: GPTunnelClient, redis: Redis, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async.fleet")
    watcher = Watcher(client, store)
    good = FleetProgress("t-1", "running", 40, {"chat": 7}, 3.5)

    async def first() -> FleetProgress:
        return await anext(aiter(watcher.progress()))

    received = asyncio.create_task(first())
    await settle(lambda: _subscribed(redis, store.channel))
    for notice in ODD_NOTICES:
        await redis.publish(store.channel, notice)
    await redis.publish(store.channel, good.dumps())
    async with asyncio.timeout(15):
        assert await received == good
    odd = [r for r in caplog.records if "odd notice" in r.getMessage()]
    assert len(odd) == len(ODD_NOTICES) - 1  # the newer kind is skipped quietly
    assert [r.levelno for r in odd].count(logging.WARNING) == 1  # then DEBUG: not a flood


async def test_result_listens_on_through_odd_notices(
    client: GPTunnelClient, redis: Redis, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gptunnel_async.fleet")
    watcher = Watcher(client, store)
    await watcher.watch("t-odd")
    waiting = asyncio.create_task(watcher.result("t-odd", timeout=15))
    await settle(lambda: _subscribed(redis, store.channel))
    for notice in ODD_NOTICES:
        await redis.publish(store.channel, notice)
    await settle(lambda: _has_logged(caplog, "odd notice"))
    listener = watcher._listener
    assert listener is not None and not listener.done()
    task = Task(id="t-odd", status="done", percent=100, result="https://example.com/r.png")
    await store.finish("t-odd", Outcome("done", task).dumps())
    assert await waiting == task


def test_the_memory_store_refuses_what_it_could_not_read_back() -> None:
    store = MemoryStore()
    with pytest.raises(StoreDataError, match="family"):
        asyncio.run(store.watch("t-1", '{"family": "video", "metadata": 1, "timeout": 1}', 5))
    asyncio.run(store.watch("t-2", '{"family": "media", "metadata": 1, "timeout": 1}', 5))
    with pytest.raises(StoreDataError, match="model"):
        asyncio.run(store.finish("t-2", '{"kind": "done", "model": "X", "task": {}, "timeout": 0}'))


class _StoreWithoutDeadLetters:
    """A store of one's own from before ``failed`` and ``dead_letter``."""

    def __init__(self) -> None:
        inner = MemoryStore()
        for name in ("watch", "claim", "reschedule", "finish", "take", "ack", "outcome"):
            setattr(self, name, getattr(inner, name))
        self.events, self.status = inner.events, inner.status


def test_a_store_without_dead_letters_serves_a_watcher_that_never_gives_up(
    client: GPTunnelClient,
) -> None:
    assert Watcher(client, _StoreWithoutDeadLetters()).max_attempts is None  # type: ignore[arg-type]


async def _yields(delivery: Any) -> Any:
    yield delivery  # a stray yield: the handler's body would never run


async def _takes_two(delivery: Any, client: Any) -> None:
    """A handler written for another signature: it cannot be called with the delivery
    alone, which the watcher refuses when it is built, not at the first delivery."""


def _takes_it_by_name(*, delivery: Any) -> None:
    """Keyword-only: the watcher passes the delivery by position."""


_TAKES_THE_DELIVERY = r"handler must take one argument, as it is called \(handler\(delivery\)\)"


async def _async_clock() -> float:
    return 0.0  # called and never awaited, it would give a coroutine, not a time


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda c, r: RedisStore(None), "redis must be a redis.asyncio"),  # type: ignore[arg-type]
        (lambda c, r: RedisStore(sync_redis.Redis()), "asyncio"),  # type: ignore[arg-type]
        (lambda c, r: RedisStore("redis://localhost"), "redis must be"),  # type: ignore[arg-type]
        (lambda c, r: RedisBudget(None, 5), "redis must be"),  # type: ignore[arg-type]
        (lambda c, r: RedisBudget(sync_redis.Redis(), 5), "asyncio"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(None, MemoryStore()), "client must be a GPTunnelClient"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, None), "store must be a WatchStore"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, object()), "store must be a WatchStore"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, r), "store must be a WatchStore"),
        (lambda c, r: Watcher(c, MemoryStore(), worker=""), "worker"),
        (lambda c, r: Watcher(c, MemoryStore(), worker=3), "worker"),  # type: ignore[arg-type]
        (lambda c, r: MemoryStore(clock=3), "clock must be a function"),  # type: ignore[arg-type]
        (lambda c, r: MemoryStore(clock=_async_clock), "clock must be a plain function"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, MemoryStore(), handler=_yields), "handler must be a function or"),
        (lambda c, r: Watcher(c, MemoryStore(), handler=lambda: None), _TAKES_THE_DELIVERY),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, MemoryStore(), handler=_takes_two), _TAKES_THE_DELIVERY),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, MemoryStore(), handler=_takes_it_by_name), _TAKES_THE_DELIVERY),  # type: ignore[arg-type]
        (lambda c, r: RedisStore(r, name="bot-\udcff"), "name must be text UTF-8 can encode"),
        (lambda c, r: RedisStore(r, prefix="\ud800app"), "prefix must be text UTF-8"),
        (lambda c, r: RedisBudget(r, 5, name="\udcff"), "name must be text UTF-8"),
        (lambda c, r: Watcher(c, MemoryStore(), worker="w-\udcff"), "worker must be text UTF-8"),
        (lambda c, r: Watcher(c, MemoryStore(), lease=1e308), "lease must be"),
        (lambda c, r: Watcher(c, MemoryStore(), delivery_timeout=1e308), "delivery_timeout"),
        (lambda c, r: Watcher(c, MemoryStore(), delivery_timeout=86_401), "at most a day"),
        (lambda c, r: Watcher(c, MemoryStore(), max_attempts=0), "max_attempts must be"),
        (lambda c, r: Watcher(c, MemoryStore(), max_attempts=True), "max_attempts"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, MemoryStore(), max_attempts=2.0), "max_attempts"),  # type: ignore[arg-type]
        (lambda c, r: Watcher(c, _StoreWithoutDeadLetters(), max_attempts=3), "counts failures"),  # type: ignore[arg-type]
    ],
)
def test_careless_constructor_arguments_are_configuration_errors(
    client: GPTunnelClient, redis_url: str, build: Any, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        build(client, Redis.from_url(redis_url))


@pytest.mark.parametrize("concurrency", [10**14, sys.maxsize])
async def test_a_worker_of_any_concurrency_reads_and_delivers(
    client: GPTunnelClient, fake: FakeGPTunnel, store: RedisStore, concurrency: int
) -> None:
    """A ``concurrency`` meant as "no bound" was sent to Redis as the count of every
    claim and take, which Redis refused: the worker read and delivered nothing, ever."""
    handled = Handled()
    task_id = fake.script_task(steps=[("running", 50), ("done", 100)])
    async with Watcher(client, store, handler=handled, concurrency=concurrency) as watcher:
        await watcher.watch(task_id)
        (delivery,) = await handled.until(1)
    assert (delivery.task_id, delivery.outcome) == (task_id, "done")


async def test_fleet_status_of_no_redis_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="redis must be"):
        await fleet_status(None)  # type: ignore[arg-type]


async def test_a_key_of_another_type_is_a_data_error_not_an_unavailable_store(
    redis: Redis,
) -> None:
    store = RedisStore(redis)
    await redis.set(store.due_key, "someone else's string")
    with pytest.raises(StoreDataError, match="a key of the fleet holds a value of another type"):
        await store.status()
    with pytest.raises(StoreDataError, match="WRONGTYPE"):
        await store.claim("worker-1", 5, 30.0)


async def _retype(redis: Redis, key: str, kind: str) -> None:
    """Replace ``key`` (a task's hash) by a value of another ``kind``, as a careless
    operator's SET or a cut write of another tool would."""
    await redis.delete(key)
    if kind == "string":
        await redis.set(key, "oops")
    elif kind == "list":
        await redis.rpush(key, "a", "b")
    elif kind == "set":
        await redis.sadd(key, "a")
    elif kind == "zset":
        await redis.zadd(key, {"a": 1})
    else:
        await redis.xadd(key, {"a": "b"})


KINDS = ["string", "list", "set", "zset", "stream"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["first", "last"], ids=["due first", "due last"])
async def test_a_task_key_of_another_type_is_set_aside_when_claimed(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    where: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="gptunnel_async.fleet")
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    ids = [fake.script_task(steps=[("running", 50), ("done", 100)]) for _ in range(5)]
    for task_id in ids:
        await watcher.watch(task_id)
    bad = ids[0] if where == "first" else ids[-1]
    await _retype(redis, store.task_key(bad), kind)
    async with watcher:
        deliveries = await handled.until(4)
        await settle(lambda: _dead_letters(store, 1))
    assert sorted(d.task_id for d in deliveries) == sorted(set(ids) - {bad})
    status = await store.status()
    assert (status.watched, status.due, status.leased, status.dead_letters) == (0, 0, 0, 1)
    ((_, letter),) = await redis.xrange(store.dead_key)
    assert letter[b"task"] == bad.encode() and f"holds a {kind}".encode() in letter[b"reason"]
    assert (await redis.type(store.task_key(bad))).decode() == kind  # not ours: left as it is
    assert len(_logged(caplog, "set aside as a dead letter")) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_finished_task_key_of_another_type_is_set_aside_when_taken(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore, kind: str
) -> None:
    ids = [fake.script_task(steps=[("done", 100)]) for _ in range(4)]
    async with Watcher(client, store) as reader:  # no handler: it finishes, delivers none
        for task_id in ids:
            await reader.watch(task_id)
        await settle(lambda: _finished_unhandled(store, 4))
    bad = ids[1]
    await _retype(redis, store.task_key(bad), kind)
    handled = Handled()
    async with Watcher(client, store, handler=handled):
        deliveries = await handled.until(3)
        await settle(lambda: _dead_letters(store, 1))
    assert sorted(d.task_id for d in deliveries) == sorted(set(ids) - {bad})
    assert (await store.status()).finished_unhandled == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("end", ["acknowledged", "set aside"])
async def test_a_delivery_whose_task_key_changed_type_meanwhile_still_ends(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    kind: str,
    end: str,
) -> None:
    """The task's key made another type while its handler ran: acknowledging failed
    with WRONGTYPE after its writes (the entry acknowledged and deleted, the worker
    told the store failed), and setting it aside was refused (the delivery came back
    again and again). Now it ends either way, and the key, not the fleet's, is left as
    it is."""
    task_id = fake.script_task(steps=[("done", 100)])
    async with Watcher(client, store) as reader:  # no handler: it finishes, delivers none
        await reader.watch(task_id)
        await settle(lambda: _finished_unhandled(store, 1))
    (entry,) = await store.take("worker-1", 1, 0.01, 60.0)
    await _retype(redis, store.task_key(task_id), kind)
    if end == "acknowledged":
        await store.ack(entry)
    else:
        assert await store.dead_letter(entry, "handler attempts failed: 5") is True
        assert (await store.status()).dead_letters == 1
    assert await redis.xlen(store.stream_key) == 0
    assert (await store.status()).finished_unhandled == 0
    assert (await redis.type(store.task_key(task_id))).decode() == kind


LOST: dict[str, tuple[str, str]] = {
    "its hash expired": ("expired", "its task's record is gone before a handler returned"),
    "its hash deleted": ("deleted", "its task's record is gone before a handler returned"),
    "its outcome deleted": ("outcome", "its outcome is missing"),
}


@pytest.mark.parametrize(("how", "reason"), LOST.values(), ids=LOST)
async def test_a_delivery_whose_task_record_is_gone_is_a_dead_letter_not_dropped_unsaid(
    client: GPTunnelClient,
    fake: FakeGPTunnel,
    redis: Redis,
    store: RedisStore,
    caplog: pytest.LogCaptureFixture,
    how: str,
    reason: str,
) -> None:
    """A handler that kept failing was retried until the task's hash expired (a day
    after the wait's deadline); then the delivery was acknowledged and dropped, with
    no log line and no dead letter: the one place a result vanished unsaid."""
    task_id = fake.script_task(steps=[("done", 100)])
    async with Watcher(client, store) as reader:  # no handler: it finishes, delivers none
        await reader.watch(task_id)
        await settle(lambda: _finished_unhandled(store, 1))
    key = store.task_key(task_id)
    if how == "expired":
        await redis.pexpire(key, 1)
        await settle(lambda: _gone(redis, key))
    elif how == "deleted":
        await redis.delete(key)
    else:
        await redis.hdel(key, "outcome")
    handled = Handled()
    with caplog.at_level(logging.WARNING, logger="gptunnel_async.fleet"):
        async with Watcher(client, store, handler=handled):
            await settle(lambda: _dead_letters(store, 1))
    assert handled.deliveries == []
    assert (await store.status()).finished_unhandled == 0
    ((_, fields),) = await redis.xrange(store.dead_key)
    assert fields[b"task"].decode() == task_id
    assert reason in fields[b"reason"].decode()
    assert [line for line in _logged(caplog, "set aside as a dead letter") if reason in line]


async def test_a_stream_entry_naming_a_task_still_watched_leaves_its_wait_alone(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    """An entry written by hand, or one left from a wait whose hash expired while its
    handler kept failing and whose task was then watched anew: setting it aside must
    not end the live wait (the hash marked dead, the task taken off the schedule)."""
    task_id = fake.script_task(steps=[("running", 40), ("running", 60), ("done", 100)])
    watcher = Watcher(client, store)
    await watcher.watch(task_id, metadata={"chat_id": 7})
    await redis.xadd(store.stream_key, {"task": task_id})
    handled = Handled()
    async with Watcher(client, store, handler=handled):
        (delivery,) = await handled.until(1)
        await settle(lambda: _dead_letters(store, 1))
    assert (delivery.task_id, delivery.outcome, delivery.metadata) == (
        task_id,
        "done",
        {"chat_id": 7},
    )
    ((_, letter),) = await redis.xrange(store.dead_key)
    assert b"watched, not finished" in letter[b"reason"]
    assert (await store.status()).finished_unhandled == 0


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


async def _finished_unhandled(store: RedisStore, count: int) -> bool:
    return (await store.status()).finished_unhandled == count


async def test_a_saved_pacing_s_own_timeout_is_not_the_wait_s(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    handled = Handled()
    watcher = Watcher(client, store, handler=handled)
    task_id = fake.script_task(steps=[("running", 10), ("running", 60), ("done", 100)])
    await watcher.watch(task_id, timeout=60)
    hasty = PollPolicy(initial=0.02, max_interval=0.05, jitter=0.0, timeout=0.001)
    saved = WaitState.start(task_id, hasty, now=0.0).to_json()  # another version's, long ago
    await redis.hset(store.task_key(task_id), "schedule", json.dumps(saved))
    async with watcher:
        (delivery,) = await handled.until(1)
    assert (delivery.task_id, delivery.outcome) == (task_id, "done")


@pytest.mark.parametrize("saved_start", [1e11, 100.0], ids=["ahead", "behind"])
async def test_a_pacing_saved_on_another_clock_still_reads_once_more_before_the_deadline(
    fake: FakeGPTunnel, redis: Redis, store: RedisStore, saved_start: float
) -> None:
    """A saved pacing whose start is on another clock than Redis's (another version's,
    another host's): one past the deadline left the wait no deadline, and a task done
    a second after its first read, where the pacing's next read came after the 2 s
    watch's deadline, was delivered "expired" unread, where a live wait reads once
    more a tenth of its timeout before it."""
    task_id = fake.script_task(duration=1.0)  # done 1 s after its first read
    slow = PollPolicy(initial=3.0, max_interval=3.0, jitter=0.0, strategy="exponential")
    handled = Handled()
    async with fake.client(poll_policy=slow) as client:
        watcher = Watcher(client, store, handler=handled)
        await watcher.watch(task_id, timeout=2.0)
        saved = WaitState.start(task_id, slow, now=saved_start).to_json()
        await redis.hset(store.task_key(task_id), "schedule", json.dumps(saved))
        async with watcher:
            (delivery,) = await handled.until(1)
    assert delivery.outcome == "done"


async def test_no_read_is_scheduled_past_the_watch_s_deadline(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    handled = Handled()
    slow = PollPolicy(initial=600.0, max_interval=600.0, jitter=0.0)
    watcher = Watcher(client, store, handler=handled, policy=slow)
    task_id = fake.script_task(steps=[("running", 10)])  # never ends
    await watcher.watch(task_id, timeout=1.0)
    async with watcher:
        await settle(lambda: _has_schedule(redis, store, task_id))
        due = await redis.zscore(store.due_key, task_id)
        deadline = float(await redis.hget(store.task_key(task_id), "deadline"))
        # the delay is counted from the claim: the read's own time may come on top
        assert due is not None and due < deadline + 5  # not 600 s later
        (delivery,) = await handled.until(1)
    assert (delivery.task_id, delivery.outcome) == (task_id, "expired")
    reads = [r for r in fake.requests if task_id in r.query.values()]
    assert len(reads) == 2  # one last read a little before the deadline, then it expires


async def _has_schedule(redis: Redis, store: RedisStore, task_id: str) -> bool:
    return bool(await redis.hexists(store.task_key(task_id), "schedule"))


@given(name=st.text(max_size=20), prefix=st.text(max_size=20))
def test_a_store_takes_a_name_its_keys_can_hold_or_refuses_it(name: str, prefix: str) -> None:
    redis = Redis()  # not connected: only the key names are built
    try:
        store = RedisStore(redis, name=name, prefix=prefix)
    except ConfigurationError:
        return
    for key in (store.task_key("t-1"), store.due_key, store.stream_key, store.dead_key):
        key.encode("utf-8")  # as redis-py will send it


@pytest.mark.parametrize(
    "odd_id", [b"t-\xff\xfe", b" ", b"x" * 300], ids=["not UTF-8", "blank", "too long"]
)
async def test_a_claimed_task_id_watch_would_refuse_is_set_aside(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore, odd_id: bytes
) -> None:
    record = '{"family": "faceswap", "metadata": null, "timeout": 60}'
    await redis.hset(
        store.task_key("").encode() + odd_id,
        mapping={"state": "watching", "record": record, "deadline": "1e12"},
    )
    await redis.zadd(store.due_key, {odd_id: 0})
    handled = Handled()
    task_id = fake.script_task(steps=[("done", 100)])
    async with Watcher(client, store, handler=handled) as watcher:
        await watcher.watch(task_id)
        (delivery,) = await handled.until(1)
        await settle(lambda: _dead_letters(store, 1))
    assert delivery.task_id == task_id
    assert (await store.status()).watched == 0
    shown = odd_id.decode(errors="replace")
    reads = [r for r in fake.requests if shown in r.query.values()]
    assert reads == []  # set aside, not read again and again


def test_a_host_name_that_is_not_utf8_still_makes_a_worker_name_the_store_takes(
    client: GPTunnelClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "h\udcffst")  # b"h\xffst", decoded
    worker = Watcher(client, MemoryStore()).worker
    assert worker.startswith("h\\udcffst:")
    worker.encode("utf-8")  # as redis-py will send it


async def test_a_slow_read_does_not_push_the_expiry_a_pause_past_the_deadline(
    client: GPTunnelClient, fake: FakeGPTunnel, store: RedisStore
) -> None:
    task_id = fake.script_task(steps=[("running", 10)])  # never ends
    fake.delay_next(4.0, times=None, path="faceswap/result")  # its one read ends at 4 s
    handled = Handled()
    slow = PollPolicy(initial=10.0, max_interval=10.0, jitter=0.0)
    watcher = Watcher(client, store, handler=handled, policy=slow)
    started = time.monotonic()
    await watcher.watch(task_id, timeout=3.0)
    async with watcher:
        (delivery,) = await handled.until(1)
    late = time.monotonic() - started
    fake.clear_faults()
    # Expired when the read ended (4 s), not the deadline's 3 s after the read (7 s).
    assert delivery.outcome == "expired" and late < 6.0


def _last_read_saying(message: str, percent: int = 40) -> str:
    """A saved pacing whose last read saw the task at ``percent`` and then failed with
    ``message``, as another process (or an older version) may have stored it."""
    task = {"id": "t-1", "object": "task", "status": "running", "percent": percent}
    error = {"kind": "ServerError", "message": message, "attributes": {"status_code": 503}}
    return json.dumps({"last": {"model": "Task", "task": task, "error": error}})


async def test_what_the_store_says_of_a_task_is_masked_with_the_reader_s_key(
    fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    """A stored error whose text held the key (an older version's, a worker in the
    middle of a key rotation) showed it in the timeout's error and the delivery."""
    async with fake.client(poll_policy=FAST) as client:
        key = client._transport._api_key
        watcher = Watcher(client, store)  # no loops: the stored values stay as written
        await watcher.watch("t-1")
        await redis.hset(store.task_key("t-1"), "schedule", _last_read_saying(f"503 ({key})"))
        with pytest.raises(WaitTimeoutError) as caught:
            await watcher.result("t-1", timeout=0.1)
        await watcher.close()
    error = caught.value
    assert error.task is not None and error.task.percent == 40  # the saved read, decoded
    assert isinstance(error.last_error, ServerError) and error.last_error.status_code == 503
    assert key not in str(error) and key not in str(error.last_error)
    assert "503 (***)" in str(error.last_error)


@pytest.mark.parametrize(
    "saved",
    [
        b"\xff\xfe not UTF-8",
        "{not json",
        json.dumps({"last": "a text"}),
        json.dumps({"last": {"model": "Task", "task": {"id": 5}}}),
        "[" * 100_000 + "]" * 100_000,
        _last_read_saying("a 503") + " " * (9 * 2**20),  # a good one, but too long
    ],
    ids=["not-utf8", "not-json", "last-not-object", "odd-task", "deep", "over-8-mib"],
)
async def test_an_odd_saved_pacing_gives_a_timeout_without_a_state(
    client: GPTunnelClient, redis: Redis, store: RedisStore, saved: str | bytes
) -> None:
    watcher = Watcher(client, store)
    await watcher.watch("t-1")
    await redis.hset(store.task_key("t-1"), "schedule", saved)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(WaitTimeoutError) as caught:
        await watcher.result("t-1", timeout=0.1)
    took = loop.time() - started
    await watcher.close()
    assert (caught.value.task, caught.value.last_error) == (None, None)
    assert str(caught.value).endswith("(no state read yet)")
    assert took < 5  # refused unparsed: the 9 MiB one is not read into a dict


@pytest.mark.parametrize(
    "stored",
    [
        {"state": "dead", "dead_reason": "a handler of version 0.1 said {key}"},
        {"state": "finished", "outcome": '{"kind": "{key}", "timeout": 1, "error": null}'},
    ],
    ids=["dead-letter-reason", "unreadable-outcome"],
)
async def test_a_store_data_error_of_result_is_masked_with_the_reader_s_key(
    fake: FakeGPTunnel, redis: Redis, store: RedisStore, stored: dict[str, str]
) -> None:
    async with fake.client(poll_policy=FAST) as client:
        key = client._transport._api_key
        watcher = Watcher(client, store)
        await watcher.watch("t-1")
        fields = {name: value.replace("{key}", key) for name, value in stored.items()}
        await redis.hset(store.task_key("t-1"), mapping=fields)
        with pytest.raises(StoreDataError) as caught:
            await watcher.result("t-1", timeout=5)
        await watcher.close()
    assert key not in str(caught.value)
    assert "***" in str(caught.value)


async def test_a_progress_notice_s_status_is_masked_with_the_reader_s_key(
    fake: FakeGPTunnel, redis: Redis, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async.fleet")
    async with fake.client(poll_policy=FAST) as client:
        key = client._transport._api_key
        watcher = Watcher(client, store)
        events = watcher.progress()
        first = asyncio.create_task(anext(events))
        notice = {"kind": "progress", "task_id": key, "status": f"running {key}", "percent": 5}
        odd = {**notice, "percent": key}  # logged as an odd notice, quoting its percent
        while not first.done():  # until the listener has subscribed and heard one
            await redis.publish(store.channel, json.dumps(odd))
            await redis.publish(store.channel, json.dumps({**notice, "metadata": None}))
            await asyncio.sleep(0.05)
        event = await first
        await events.aclose()
        await watcher.close()
    assert (event.task_id, event.status) == ("***", "running ***")
    logged = [r.getMessage() for r in caplog.records if "odd notice" in r.getMessage()]
    assert logged and all(key not in line and "***" in line for line in logged)


async def test_a_resolved_task_is_stored_with_the_key_masked(
    fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    """A webhook's task parsed without this client's key (``parse_webhook`` masks the
    key of ``$GPTUNNEL_API_KEY`` unless given another) went into Redis as it came: its
    texts held the key, for anyone who reads the store, though readers mask it."""
    async with fake.client(poll_policy=FAST) as client:
        key = client._transport._api_key
        watcher = Watcher(client, store)
        await watcher.watch("t-1")
        echoed = Task(id="t-1", status="failed", percent=0, error=f"bad key {key}")
        assert await watcher.resolve(echoed)
        with pytest.raises(TaskFailedError) as caught:
            await watcher.result("t-1", timeout=5)
        await watcher.close()
    stored = await redis.hgetall(store.task_key("t-1"))
    assert stored and not any(key.encode() in value for value in stored.values())
    assert "***" in str(caught.value)


@pytest.mark.parametrize("part", ["due", "leases", "finished"])
async def test_a_fleet_key_of_another_type_fails_a_script_before_it_writes(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore, part: str
) -> None:
    """An operator's ``SET`` on one of the fleet's own keys failed a script midway, and
    Redis kept the writes before the failing command: a wait registered but never due
    (``watch()`` again said "registered already"), or finished but never delivered, even
    once the key was mended. Now the script writes nothing, and the wait goes on once it
    is."""
    key = {"due": store.due_key, "leases": store.leases_key, "finished": store.stream_key}[part]
    handled = Handled()
    watcher = Watcher(client, store, handler=handled, lease=1.0)
    task_id = fake.script_task(steps=[("done", 100)])
    await redis.set(key, "an operator's")
    if part == "due":
        with pytest.raises(StoreDataError, match="nothing was written"):
            await watcher.watch(task_id)
        await redis.delete(key)
        assert await watcher.watch(task_id) is True
    else:
        assert await watcher.watch(task_id) is True
    async with watcher:
        await asyncio.sleep(1.2)  # its scripts fail meanwhile
        await redis.delete(key)
        (delivery,) = await handled.until(1)
    assert (delivery.task_id, delivery.outcome) == (task_id, "done")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stored=st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["inf", "-inf", "nan", "1e300", "0x10", " 5", "+5", "1_0", "٣", "5.0"]),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    )
)
async def test_a_count_of_failures_is_read_alike_by_the_take_and_the_count(
    redis: Redis, stored: str
) -> None:
    """An operator's count of "1e300" (or "inf") was 0 for the take, which starts it
    again, but 10**15 for the script that counts the next failure: the delivery was
    given up on after one more failed attempt, whatever its max_attempts."""
    store = RedisStore(redis, name=f"counts-{next(_names)}")
    await redis.hset(store.task_key("t-1"), mapping={"state": "finished", "failures": stored})
    read = _decode.failures(stored.encode())
    entry = Entry("1-0", "t-1", None, None, False, read)
    assert await store.failed(entry) == min(read + 1, 10**15)


async def test_a_dead_worker_s_delivery_behind_many_live_ones_is_taken_over(
    client: GPTunnelClient, fake: FakeGPTunnel, redis: Redis, store: RedisStore
) -> None:
    """Each XAUTOCLAIM looks at no more than ten times its COUNT pending entries: one
    that always looked from the start never reached a dead worker's delivery behind
    more than that many deliveries live workers held, until those ended."""
    ids = [fake.script_task(steps=[("done", 100)]) for _ in range(12)]
    async with Watcher(client, store) as reader:  # no handler: it finishes, delivers none
        for task_id in ids:
            await reader.watch(task_id)
        await settle(lambda: _finished_unhandled(store, 12))
    live = await store.take("live", 11, 0, 60.0)
    (dead,) = await store.take("dead", 1, 0, 60.0)
    await asyncio.sleep(0.3)
    # The live worker's deliveries are in hand again (a fresh idle time each).
    await redis.xclaim(store.stream_key, GROUP, "live", 0, [entry.entry_id for entry in live])
    taken = []
    for _ in range(3):  # the first look ends at the tenth entry, the next goes on
        taken = await store.take("rescuer", 1, 0, reclaim_after=0.2)
        if taken:
            break
    assert [(entry.entry_id, entry.task_id, entry.redelivered) for entry in taken] == [
        (dead.entry_id, dead.task_id, True)
    ]


@pytest.mark.parametrize(
    ("reply", "cursor"),
    [
        ([b"1700000000000-3", [], []], "1700000000000-3"),
        (["1700000000000-3", []], "1700000000000-3"),  # decode_responses, Redis 6.2
        ([b"0-0", [], []], "0-0"),
        ([b"\xff-1", [], []], "0-0"),
        ([None, []], "0-0"),
        ([], "0-0"),
        (None, "0-0"),
        ([b"1-2; FLUSHALL", []], "0-0"),
    ],
)
def test_the_next_claim_goes_on_from_a_usable_cursor_only(reply: Any, cursor: str) -> None:
    assert _cursor(reply) == cursor


async def test_a_memory_store_clock_that_gives_no_seconds_is_a_configuration_error() -> None:
    """``MemoryStore(clock=datetime.now)`` failed with TypeError from deep in the store,
    not a GPTunnelError."""
    from datetime import datetime

    store = MemoryStore(clock=datetime.now)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="clock must give the time in seconds"):
        await store.watch("t-1", '{"family": "faceswap", "metadata": {}, "timeout": 60}', 60.0)
