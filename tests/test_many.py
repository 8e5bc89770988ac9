"""Many waits at once: as_completed yields in finishing order, wait_many in the order given,
and no failure cancels another wait."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from gptunnel_async import (
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    NotFoundError,
    ProgressEvent,
    Task,
    TaskFailedError,
    UsageError,
)
from gptunnel_async._many import AsCompleted, outcomes_in_order

from .conftest import HANG_GUARD, ScriptedAPI, client_tasks, task_json


class Tasks:
    """A reply running tasks by id: ``done-<ms>`` finishes ``ms`` milliseconds after its
    first read, ``fail-<ms>`` fails then, ``gone`` is a 404; ``done-<name>`` and
    ``fail-<name>`` (a name, not a number) end once the test calls :meth:`release`, so
    tests of the finishing order choose it rather than race the clock."""

    def __init__(self) -> None:
        self.first_read: dict[str, float] = {}
        self.reads: Counter[str] = Counter()
        self.finished: list[str] = []
        self.read = asyncio.Event()
        self.released: set[str] = set()

    def release(self, task_id: str) -> None:
        """Let ``task_id`` (a ``done-<name>`` or ``fail-<name>``) end at its next read."""
        self.released.add(task_id)

    async def until_read(self, times: int) -> None:
        """Until the tasks have been read ``times`` times in all."""
        async with asyncio.timeout(HANG_GUARD):
            while self.reads.total() < times:
                self.read.clear()
                await self.read.wait()

    async def __call__(self, request: web.Request) -> web.Response:
        task_id = request.query["taskId"]
        self.reads[task_id] += 1
        self.read.set()
        if task_id == "gone":
            return web.json_response({"error": {"message": "no such task"}}, status=404)
        now = asyncio.get_running_loop().time()
        started = self.first_read.setdefault(task_id, now)
        outcome, when = task_id.split("-")
        ended = now - started >= int(when) / 1000 if when.isdigit() else task_id in self.released
        if not ended:
            return web.json_response(task_json(status="running", percent=10, id=task_id))
        self.finished.append(task_id)
        if outcome == "fail":
            return web.json_response(task_json(status="failed", error="no face", id=task_id))
        return web.json_response(task_json(status="done", percent=100, id=task_id))


@pytest.fixture
def tasks(api: ScriptedAPI) -> Tasks:
    server = Tasks()
    api.script(server)
    return server


async def next_outcome(finished: AsCompleted[Any]) -> object:
    async with asyncio.timeout(HANG_GUARD):
        return await anext(finished)


async def test_as_completed_yields_each_task_as_it_finishes(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    async with client.as_completed(["done-a", "done-b", "done-c"]) as finished:
        for task_id in ["done-b", "done-c", "done-a"]:  # not the order given
            tasks.release(task_id)
            task = await next_outcome(finished)
            assert isinstance(task, Task) and task.id == task_id
        assert [task async for task in finished] == []


async def test_failures_come_as_values_and_the_other_waits_go_on(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    async with client.as_completed(
        ["done-a", "fail-b", "done-c"], return_exceptions=True
    ) as finished:
        tasks.release("fail-b")
        failure = await next_outcome(finished)
        assert isinstance(failure, TaskFailedError) and failure.task_id == "fail-b"
        for task_id in ["done-c", "done-a"]:
            tasks.release(task_id)
            task = await next_outcome(finished)
            assert isinstance(task, Task) and task.id == task_id


async def test_a_raised_failure_leaves_the_rest_to_iterate(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    finished = client.as_completed(["done-a", "fail-b", "done-c"])
    tasks.release("fail-b")
    with pytest.raises(TaskFailedError) as caught:
        await next_outcome(finished)
    assert caught.value.task_id == "fail-b"
    for task_id in ["done-c", "done-a"]:  # the same iterator carries on
        tasks.release(task_id)
        task = await next_outcome(finished)
        assert isinstance(task, Task) and task.id == task_id
    assert [task async for task in finished] == []


async def test_leaving_as_completed_early_cancels_the_waits_still_running(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    async with client.as_completed(["done-0", "done-5000", "done-5000"]) as finished:
        async for task in finished:
            assert task.id == "done-0"
            break
    assert client_tasks() == []


async def test_cancelling_an_iteration_of_as_completed_cancels_every_wait(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    async def iterate() -> None:
        async for _ in client.as_completed(["done-60000"] * 3, timeout=600):
            pass

    consumer = asyncio.create_task(iterate())
    await tasks.until_read(3)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert client_tasks() == []
    reads = tasks.reads.total()
    await asyncio.sleep(0.3)  # several poll intervals: no wait reads on
    assert tasks.reads.total() == reads


async def test_breaking_out_of_as_completed_cancels_the_waits_and_leaves_no_error(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reported.append(context))
    async for task in client.as_completed(["done-0", "done-60000", "fail-60000"], timeout=600):
        assert task.id == "done-0"
        break
    leftover = client_tasks()
    async with asyncio.timeout(HANG_GUARD):
        await asyncio.wait(leftover)
    assert all(waiting.cancelled() for waiting in leftover)
    reads = tasks.reads.total()
    await client.close()
    await asyncio.sleep(0.3)  # several poll intervals: no wait reads on
    gc.collect()
    assert tasks.reads.total() == reads
    assert reported == []


async def test_tasks_sharing_one_as_completed_each_end_when_every_outcome_is_taken(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    """The worker whose step waited when the other took the last outcome waited forever."""
    finished = client.as_completed(["done-a", "done-b", "fail-c"], return_exceptions=True)

    async def worker() -> list[object]:
        return [outcome async for outcome in finished]

    workers = [asyncio.create_task(worker()) for _ in range(3)]
    await tasks.until_read(3)
    for task_id in ["done-a", "fail-c", "done-b"]:
        tasks.release(task_id)
    async with asyncio.timeout(HANG_GUARD):
        taken = [outcome for outcomes in await asyncio.gather(*workers) for outcome in outcomes]
    assert sorted(outcome.id for outcome in taken if isinstance(outcome, Task)) == [
        "done-a",
        "done-b",
    ]
    assert [type(outcome) for outcome in taken if not isinstance(outcome, Task)] == [
        TaskFailedError
    ]


async def test_cancelling_one_task_sharing_as_completed_tells_the_others(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    """The other worker waited forever, or (once every wait was cancelled) took each
    cancelled wait for one its own callback cancelled."""
    finished = client.as_completed(["done-60000"] * 3, timeout=600)
    first, second = (asyncio.create_task(anext(finished)) for _ in range(2))
    await tasks.until_read(3)
    first.cancel()
    async with asyncio.timeout(HANG_GUARD):
        with pytest.raises(UsageError, match="as_completed was closed while this step"):
            await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert client_tasks() == []
    assert [outcome async for outcome in finished] == []


async def test_wait_many_returns_tasks_in_the_order_given(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    done = await client.wait_many(["done-200", "done-0", "done-100"])
    assert [task.id for task in done] == ["done-200", "done-0", "done-100"]
    assert all(task.is_done for task in done)


async def test_wait_many_puts_failures_in_place_with_return_exceptions(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    outcomes = await client.wait_many(["done-100", "gone", "fail-0"], return_exceptions=True)
    assert isinstance(outcomes[0], Task)
    assert isinstance(outcomes[1], NotFoundError)
    assert isinstance(outcomes[2], TaskFailedError)
    assert all(isinstance(o, Task | GPTunnelError) for o in outcomes)


async def test_wait_many_raises_the_first_failure_only_after_every_wait_ended(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    with pytest.raises(TaskFailedError, match="fail-0"):
        await client.wait_many(["done-200", "fail-0", "gone"])
    assert "done-200" in tasks.finished  # the failure cancelled nothing


async def test_cancelling_wait_many_cancels_every_wait(
    client: GPTunnelClient, tasks: Tasks
) -> None:
    waiting = asyncio.create_task(client.wait_many(["done-5000", "done-5000"]))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert client_tasks() == []


def cancel_own_wait_of(task_id: str) -> Callable[[ProgressEvent[Any]], None]:
    """An ``on_progress`` that cancels the asyncio task its wait runs in, on an event of
    ``task_id``: meaning to stop that one wait."""

    def cancel(event: ProgressEvent[Any]) -> None:
        if event.task_id == task_id:
            running = asyncio.current_task()
            assert running is not None
            running.cancel()

    return cancel


@pytest.mark.parametrize("return_exceptions", [True, False])
async def test_a_wait_cancelled_from_its_own_callback_is_a_usage_error_in_wait_many(
    client: GPTunnelClient, tasks: Tasks, return_exceptions: bool
) -> None:
    """The wait's CancelledError was raised from wait_many, whose caller was never
    cancelled (a TaskGroup drops it silently), with the other waits' outcomes unread."""
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reported.append(context))
    waiting = client.wait_many(
        ["done-60000", "fail-0", "done-0"],
        on_progress=cancel_own_wait_of("done-60000"),
        timeout=600,
        return_exceptions=return_exceptions,
    )
    if return_exceptions:
        outcomes = await waiting
        assert isinstance(outcomes[0], UsageError) and "'done-60000'" in str(outcomes[0])
        assert isinstance(outcomes[1], TaskFailedError)
        assert isinstance(outcomes[2], Task) and outcomes[2].is_done
    else:
        with pytest.raises(UsageError, match="'done-60000' was cancelled from within"):
            await waiting
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    gc.collect()
    assert reported == []  # no error left unretrieved


@pytest.mark.parametrize("return_exceptions", [True, False])
async def test_a_wait_cancelled_from_its_own_callback_is_a_usage_error_in_as_completed(
    client: GPTunnelClient, tasks: Tasks, return_exceptions: bool
) -> None:
    async with client.as_completed(
        ["done-60000", "done-0"],
        on_progress=cancel_own_wait_of("done-60000"),
        timeout=600,
        return_exceptions=return_exceptions,
    ) as finished:
        outcomes: list[object] = []
        while len(outcomes) < 2:
            try:
                outcomes.append(await next_outcome(finished))
            except UsageError as error:
                outcomes.append(error)
    errors = [outcome for outcome in outcomes if isinstance(outcome, UsageError)]
    assert len(errors) == 1 and "task 'done-60000' was cancelled from within" in str(errors[0])
    assert [outcome.id for outcome in outcomes if isinstance(outcome, Task)] == ["done-0"]


async def test_an_empty_list_waits_for_nothing(client: GPTunnelClient, tasks: Tasks) -> None:
    assert await client.wait_many([]) == []
    assert [task async for task in client.as_completed([])] == []
    assert tasks.reads == {}


async def test_ids_are_checked_before_any_request(client: GPTunnelClient, tasks: Tasks) -> None:
    with pytest.raises(ConfigurationError, match="not one string"):
        client.as_completed("done-0")
    with pytest.raises(ConfigurationError, match="task_id"):
        await client.wait_many(["done-0", " "])
    assert tasks.reads == {}


@pytest.mark.parametrize("flag", ["false", "no", 0, 1, None])
async def test_return_exceptions_must_be_a_bool(
    client: GPTunnelClient, tasks: Tasks, flag: Any
) -> None:
    """``return_exceptions="false"`` (from a settings file) was taken as true: failures
    came back as values, read as tasks further on, rather than being raised."""
    with pytest.raises(ConfigurationError, match="return_exceptions must be a bool"):
        client.as_completed(["done-0"], return_exceptions=flag)
    with pytest.raises(ConfigurationError, match="return_exceptions must be a bool"):
        await client.media.wait_many(["done-0"], return_exceptions=flag)
    assert tasks.reads == {}


async def test_other_families_wait_for_many_too(client: GPTunnelClient, tasks: Tasks) -> None:
    done = await client.bgremover.wait_many(["done-0", "done-50"])
    assert [task.id for task in done] == ["done-0", "done-50"]


# -- what wait_many makes of waits that have ended: pure, no sockets -----------------

_FAILED = TaskFailedError(Task(id="t2", status="failed"))
_GONE = NotFoundError("no such task", status_code=404)
_BUG = KeyError("not an SDK error")


@pytest.mark.parametrize(
    ("ended", "return_exceptions", "expected"),
    [
        # (result, error) per wait, in the order given -> the list returned, or what is raised
        ([], False, []),
        ([("a", None), ("b", None)], False, ["a", "b"]),
        ([("a", None), (None, _FAILED), (None, _GONE)], False, _FAILED),
        ([(None, _GONE), (None, _FAILED)], False, _GONE),  # the first in the order given
        ([("a", None), (None, _FAILED), (None, _GONE)], True, ["a", _FAILED, _GONE]),
        ([("a", None), (None, _FAILED), (None, _BUG)], True, _BUG),  # never returned as a value
        ([(None, _BUG), (None, _FAILED)], False, _BUG),
    ],
)
def test_the_outcomes_of_ended_waits_are_in_order_or_the_first_failure_raised(
    ended: list[tuple[object, BaseException | None]],
    return_exceptions: bool,
    expected: list[object] | BaseException,
) -> None:
    if isinstance(expected, BaseException):
        with pytest.raises(type(expected)) as raised:
            outcomes_in_order(ended, return_exceptions=return_exceptions)
        assert raised.value is expected
    else:
        assert outcomes_in_order(ended, return_exceptions=return_exceptions) == expected
