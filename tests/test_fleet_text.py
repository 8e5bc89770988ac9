"""Whatever text a server sends or a caller registers, the fleet stores and delivers it as
it was, on a real redis-server as in memory; a careless call fails with a typed error;
``Watcher.result`` keeps its deadline whatever the store does with a cancellation."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

import gptunnel_async
from gptunnel_async import ConfigurationError, GPTunnelClient, Task, WaitTimeoutError
from gptunnel_async._logging import LOG_TEXT
from gptunnel_async.fleet import Delivery, MemoryStore, RedisStore, Watcher, WatchStore
from gptunnel_async.fleet._records import MAX_DEPTH

from .conftest import FAST, HANG_GUARD, ScriptedAPI, task_json

_names = itertools.count()

any_text = st.text(st.characters(exclude_categories=()), max_size=24)
"""Any text at all, lone surrogates (category Cs) included: JSON escapes carry them."""


class Handled:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.arrived = asyncio.Event()

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.arrived.set()


async def delivered(
    client: GPTunnelClient, api: ScriptedAPI, store: WatchStore, answers: list[Any], metadata: Any
) -> tuple[Delivery, Task]:
    """Watch one task the server answers ``answers`` about (the last one repeats) until it
    is delivered; return the delivery and what ``result`` in another process gets."""
    api.replies.clear()
    api.script(*answers)
    handled = Handled()
    async with asyncio.timeout(HANG_GUARD):
        async with Watcher(client, store, handler=handled, policy=FAST) as watcher:
            assert await watcher.watch("t-1", metadata=metadata)
            waited = await watcher.result("t-1")
            await handled.arrived.wait()
    (delivery,) = handled.deliveries
    assert isinstance(waited, Task)
    return delivery, waited


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=any_text, result=any_text, error=any_text, kind=any_text, note=any_text)
@example(status="\ud800", result="\ud800", error="\udfff", kind="\ud83d", note="\ud800")
async def test_any_text_the_server_sends_is_delivered_alike_by_both_stores(
    client: GPTunnelClient,
    api: ScriptedAPI,
    redis: Redis,
    status: str,
    result: str,
    error: str,
    kind: str,
    note: str,
) -> None:
    done = task_json("done", 100, result=f"http://x/{result}.png", error=error, type=kind)
    answers = [task_json(f"running{status}", 40), done]
    metadata = {"note": note, note: [note, {"deeper": note}]}
    api.replies.clear()
    api.script(done)
    direct = await client.get_result("t-1")

    in_memory = await delivered(client, api, MemoryStore(), answers, metadata)
    in_redis = await delivered(
        client, api, RedisStore(redis, name=f"text-{next(_names)}"), answers, metadata
    )

    assert in_redis == in_memory
    delivery, waited = in_redis
    assert (delivery.outcome, delivery.task, delivery.metadata) == ("done", direct, metadata)
    assert waited == direct


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({1: "a"}, "keys must be text"),
        ({"nested": [{2.5: "a"}]}, "keys must be text"),
        ({"a": math.nan}, "metadata must be JSON"),
        ({"a": [math.inf]}, "metadata must be JSON"),
        ({"a": object()}, "metadata must be JSON"),
        (b"bytes", "metadata must be JSON"),
        ("\ud800" * 20_000, "at most"),  # its escapes are what the store keeps
    ],
)
async def test_metadata_that_is_not_portable_json_is_a_configuration_error(
    client: GPTunnelClient, metadata: Any, match: str
) -> None:
    watcher = Watcher(client, MemoryStore())
    with pytest.raises(ConfigurationError, match=match):
        await watcher.watch("t-1", metadata=metadata)
    assert (await watcher.status()).watched == 0


async def test_metadata_nested_too_deeply_or_in_a_cycle_is_a_configuration_error(
    client: GPTunnelClient,
) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    cycle: list[Any] = []
    cycle.append(cycle)
    watcher = Watcher(client, MemoryStore())
    for metadata in (deep, cycle):
        with pytest.raises(ConfigurationError, match="metadata must be JSON"):
            await watcher.watch("t-1", metadata=metadata)


def nested(kinds: list[str], leaf: Any = "leaf") -> Any:
    """``leaf`` inside one list, tuple or object per entry of ``kinds``, outermost last."""
    for kind in kinds:
        leaf = {"list": [leaf], "tuple": (leaf,), "dict": {"k": leaf}}[kind]
    return leaf


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 2 * MAX_DEPTH),
    pattern=st.lists(st.sampled_from(["list", "tuple", "dict"]), min_size=1, max_size=3),
)
@example(depth=MAX_DEPTH, pattern=["list"])
@example(depth=MAX_DEPTH + 1, pattern=["dict"])
@example(depth=950, pattern=["list"])
async def test_metadata_is_refused_at_watch_exactly_when_it_nests_deeper_than_the_fleet_reads(
    depth: int, pattern: list[str]
) -> None:
    """Metadata nested 980 deep was registered (``True``), then every worker that claimed
    it failed to read its record back, its stack deeper than the caller's, and set the
    wait aside as a dead letter: the handler never ran."""
    kinds = list(itertools.islice(itertools.cycle(pattern), depth))
    metadata = nested(kinds)
    async with GPTunnelClient(api_key="sk-nested-metadata-key") as client:
        watcher = Watcher(client, MemoryStore())
        if len(kinds) > MAX_DEPTH:
            with pytest.raises(ConfigurationError, match=f"over {MAX_DEPTH} levels deep"):
                await watcher.watch("t-1", metadata=metadata)
        else:
            assert await watcher.watch("t-1", metadata=metadata)


async def test_metadata_deeper_than_the_fleet_reads_through_shared_lists_is_refused(
    client: GPTunnelClient,
) -> None:
    """Lists met again along a deeper path count there too: ten shared pieces 60 deep,
    each inside the next, nest 600 deep though each is also met 2 deep."""
    pieces: list[Any] = [[]]
    for _ in range(10):
        pieces.append(nested(["list"] * 60, pieces[-1]))
    watcher = Watcher(client, MemoryStore())
    with pytest.raises(ConfigurationError, match=f"over {MAX_DEPTH} levels deep"):
        await watcher.watch("t-1", metadata=pieces)
    shared = [1]
    fan = [[shared, shared], {"again": [shared]}]  # shared, but shallow: taken
    assert await watcher.watch("t-2", metadata=fan)


@pytest.mark.parametrize("repeats", [17, 1000, 10**6])
async def test_metadata_of_shared_lists_too_large_to_write_is_refused_at_once(
    client: GPTunnelClient, repeats: int
) -> None:
    """A few lists sharing their items (kilobytes in memory) were written out whole
    before the size was looked at: ``[[[0] * 1000] * 1000] * 300`` stalled the event
    loop for seconds (hundreds of megabytes of JSON), a larger one ran out of memory.
    Counted on every path as JSON writes them, they are refused within 16 KiB steps."""
    row = [0] * 1000
    metadata = [[row] * 1000] * repeats
    watcher = Watcher(client, MemoryStore())
    started = time.perf_counter()
    with pytest.raises(ConfigurationError, match="over 16384 values"):
        await watcher.watch("t-1", metadata=metadata)
    assert time.perf_counter() - started < 1.0
    fits = [[0] * 100] * 50  # repeated, and small written out: taken
    assert await watcher.watch("t-2", metadata=fits)


async def test_metadata_as_deep_as_the_fleet_takes_is_delivered_by_both_stores(
    client: GPTunnelClient, api: ScriptedAPI, redis: Redis
) -> None:
    metadata = nested(["list", "dict"] * (MAX_DEPTH // 2))
    answers = [task_json("done", 100)]
    in_memory = await delivered(client, api, MemoryStore(), answers, metadata)
    store = RedisStore(redis, name=f"text-{next(_names)}")
    in_redis = await delivered(client, api, store, answers, metadata)
    assert in_redis == in_memory
    assert in_redis[0].metadata == json.loads(json.dumps(metadata))
    assert (await store.status()).dead_letters == 0


@pytest.mark.parametrize("timeout", ["x", -1, -0.001, math.nan, math.inf, True, [1]])
async def test_a_bad_result_timeout_is_a_configuration_error(
    client: GPTunnelClient, timeout: Any
) -> None:
    watcher = Watcher(client, MemoryStore())
    with pytest.raises(ConfigurationError, match="timeout"):
        await watcher.result("t-1", timeout=timeout)


@pytest.mark.parametrize(
    "task", ["x", None, {"id": "t-1", "status": "done"}, Task(id=" ", status="done")]
)
async def test_resolving_what_is_not_a_task_is_a_configuration_error(
    client: GPTunnelClient, task: Any
) -> None:
    watcher = Watcher(client, MemoryStore())
    with pytest.raises(ConfigurationError):
        await watcher.resolve(task)


class SwallowingStore(MemoryStore):
    """A store whose reads swallow a cancellation and answer "not finished", as a client
    library may do when a cancellation reaches it inside a network call."""

    async def outcome(self, task_id: str) -> str | None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            return None
        return await super().outcome(task_id)


async def test_result_keeps_its_deadline_when_the_store_swallows_the_cancellation(
    client: GPTunnelClient,
) -> None:
    watcher = Watcher(client, SwallowingStore())
    await watcher.watch("t-1")
    for timeout in (0.001, 0.03, 0.07):
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(WaitTimeoutError):
                await watcher.result("t-1", timeout=timeout)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_result_with_tiny_timeouts_on_redis_always_ends(
    client: GPTunnelClient, redis: Redis
) -> None:
    watcher = Watcher(client, RedisStore(redis, name=f"tiny-{next(_names)}"))
    await watcher.watch("t-1")
    for attempt in range(40):
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(WaitTimeoutError):
                await watcher.result("t-1", timeout=0.0001 * (1 + attempt % 10))
    await watcher.close()


async def test_fleet_log_lines_are_bounded_and_printable(
    client: GPTunnelClient, api: ScriptedAPI, caplog: pytest.LogCaptureFixture, instant: None
) -> None:
    api.replies.clear()
    api.script((500, "\x1b[2J" + "x" * 5000, {}))
    caplog.set_level(logging.WARNING, logger="gptunnel_async")
    watcher = Watcher(client, MemoryStore(), policy=FAST)
    with pytest.raises(ConfigurationError, match="unprintable"):
        await watcher.watch("t-\u202e" + "y" * 250)  # a bidi override: not an id at all
    await watcher.watch("t-" + "y" * 250)  # long: each line bounds it
    logged = asyncio.Event()
    signal = logging.Handler()
    signal.emit = lambda record: logged.set()  # type: ignore[method-assign]
    logging.getLogger("gptunnel_async.fleet").addHandler(signal)
    try:
        async with asyncio.timeout(HANG_GUARD), watcher:
            await logged.wait()
    finally:
        logging.getLogger("gptunnel_async.fleet").removeHandler(signal)
    fleet_lines = [r.getMessage() for r in caplog.records if r.name == "gptunnel_async.fleet"]
    for line in fleet_lines:
        assert "\x1b" not in line and "\u202e" not in line
        assert len(line) < 3 * LOG_TEXT


def test_every_sdk_logger_gets_the_bounding_filter() -> None:
    package = Path(gptunnel_async.__file__).parent
    unfiltered = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "_logging.py" and "getLogger(" in path.read_text()
    ]
    assert unfiltered == []
