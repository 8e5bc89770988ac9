"""wait_for_result: events, pacing, failures, the deadline, transient errors, both modes."""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import gc
import inspect
import logging
import pickle
import random
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    NotFoundError,
    PollPolicy,
    ProgressEvent,
    ServerError,
    Task,
    TaskFailedError,
    TaskWaiter,
    UsageError,
    WaitTimeoutError,
)

from . import faults
from .conftest import (
    API_KEY,
    FAST,
    HANG_GUARD,
    ScriptedAPI,
    client_tasks,
    connections_in_use,
    task_json,
)


def steps(*states: tuple[str, float | None]) -> list[dict[str, Any]]:
    return [task_json(status=status, percent=percent) for status, percent in states]


async def collect(
    waiter: collections.abc.AsyncIterator[ProgressEvent], into: list[ProgressEvent] | None = None
) -> list[ProgressEvent]:
    """Every event of ``waiter``, appended to ``into`` as they come (kept if it raises)."""
    events = [] if into is None else into
    async for event in waiter:
        events.append(event)
    return events


def script_a_stalled_read(api: ScriptedAPI) -> asyncio.Event:
    """Make the API's next reply take ten seconds; the event is set when the read arrives."""
    entered = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        entered.set()
        await asyncio.sleep(10)
        return web.json_response(task_json())

    api.script(stall)
    return entered


# -- results and events -------------------------------------------------------------


async def test_awaiting_returns_the_done_task(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("idle", 0), ("running", 50), ("done", 100)))
    task = await client.wait_for_result("task-1")
    assert isinstance(task, Task)
    assert task.is_done
    assert task.result == "https://storage.example/result.png"
    assert len(api.requests) == 3


async def test_events_come_on_the_first_read_and_each_change_only(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(
        *steps(
            ("idle", 0),
            ("idle", 0),
            ("running", 0),
            ("running", 40),
            ("running", 40),
            ("running", 90),
            ("done", 100),
        )
    )
    events = await collect(client.wait_for_result("task-1"))
    assert [(e.status, e.percent) for e in events] == [
        ("idle", 0),
        ("running", 0),
        ("running", 40),
        ("running", 90),
        ("done", 100),
    ]
    assert all(e.task_id == "task-1" for e in events)
    assert events[-1].is_done
    assert events[-1].task.is_done


async def test_percent_in_events_never_goes_backwards(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("running", 60), ("running", 30), ("queued", 10), ("done", 100)))
    events = await collect(client.wait_for_result("task-1"))
    assert [(e.status, e.percent) for e in events] == [
        ("running", 60),
        ("queued", 60),
        ("done", 100),
    ]


async def test_done_on_the_first_read_is_one_event(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(task_json(status="done", percent=100))
    events = await collect(client.wait_for_result("task-1"))
    assert len(events) == 1
    assert events[0].status == "done"
    assert len(api.requests) == 1


async def test_unknown_statuses_keep_polling(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("warming_up", 5), ("some_new_state", 50), ("done", 100)))
    events = await collect(client.wait_for_result("task-1"))
    assert [e.status for e in events] == ["warming_up", "some_new_state", "done"]


async def test_elapsed_counts_from_the_start_of_the_wait(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(*steps(("running", 10), ("done", 100)))
    events = await collect(client.wait_for_result("task-1"))
    assert 0 <= events[0].elapsed < events[1].elapsed


# -- failure ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "error", "fail", "cancelled", "canceled"])
async def test_failure_raises_task_failed_error_and_is_not_yielded(
    status: str, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(
        task_json(status="running", percent=30),
        task_json(status=status, percent=30, error="no face detected"),
    )
    events: list[ProgressEvent] = []
    with pytest.raises(TaskFailedError, match="no face detected") as caught:
        await collect(client.wait_for_result("task-1"), into=events)
    assert [e.status for e in events] == ["running"]
    assert caught.value.task_id == "task-1"
    assert caught.value.task.status == status


async def test_failure_raises_when_awaited_too(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(task_json(status="failed", error="bad image"))
    with pytest.raises(TaskFailedError, match="bad image"):
        await client.wait_for_result("task-1")


@pytest.mark.parametrize(("status", "cls"), [(401, AuthenticationError), (404, NotFoundError)])
async def test_client_errors_end_the_wait_at_once(
    status: int, cls: type[Exception], client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(task_json(status="running", percent=5), (status, {"error": {"message": "x"}}, {}))
    with pytest.raises(cls):
        await client.wait_for_result("task-1")
    assert len(api.requests) == 2


# -- transient trouble ----------------------------------------------------------------


async def test_transient_failures_never_end_the_wait_before_its_deadline(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    trouble: list[Any] = [(503, "", {})] * 4 + ["reset"] * 4 + [(429, "", {})] * 4
    trouble += [(200, "<html>proxy error</html>", {"Content-Type": "text/html"})] * 3
    api.script(task_json(status="running", percent=10), *trouble, *steps(("done", 100)))
    task = await client.wait_for_result("task-1")
    assert task.is_done


async def test_retry_after_stretches_the_next_poll(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    rate_limited = (429, "", {"Retry-After": "30"})
    api.script(
        task_json(status="running"), *[rate_limited] * 4, task_json(status="done", percent=100)
    )
    await client.wait_for_result("task-1", timeout=None)
    assert 30.0 in recorded_sleeps  # the transport's retries
    assert max(recorded_sleeps) == pytest.approx(30.0, abs=0.05)  # and the next poll


# -- pacing ---------------------------------------------------------------------------


async def test_first_read_is_immediate_then_waits_grow_to_the_cap(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    policy = PollPolicy(initial=1.0, multiplier=2.0, max_interval=5.0, jitter=0.0, timeout=None)
    api.script(*steps(*[("running", 10)] * 6), task_json(status="done", percent=100))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url) as client:
        await client.wait_for_result("task-1", policy=policy)
    assert recorded_sleeps[0] == 0.0
    assert recorded_sleeps[1:] == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0, 5.0], abs=0.05)


def test_intervals_stay_within_jitter_of_their_nominal_value() -> None:
    policy = PollPolicy(initial=2.0, multiplier=1.5, max_interval=10.0, jitter=0.25)
    nominal = 2.0
    intervals = policy.intervals(random.Random(7))
    for _ in range(200):
        wait = next(intervals)
        assert nominal * 0.75 <= wait <= nominal * 1.25
        nominal = min(nominal * 1.5, 10.0)


def test_default_policy_suits_a_chat_bot() -> None:
    policy = PollPolicy()
    assert (policy.initial, policy.multiplier, policy.max_interval) == (1.0, 1.5, 10.0)
    assert policy.jitter == 0.1
    assert policy.timeout == 600.0


@pytest.mark.parametrize(
    "values",
    [
        {"initial": 0},
        {"initial": -1},
        {"initial": float("nan")},
        {"initial": float("inf")},
        {"multiplier": 0.5},
        {"max_interval": 0},
        {"initial": 5, "max_interval": 1},
        {"jitter": 1},
        {"jitter": -0.1},
        {"timeout": 0},
        {"timeout": -3},
        {"initial": "1"},
        {"initial": True},
    ],
)
def test_nonsense_policies_raise_value_error(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is "a ValueError"
        PollPolicy(**values)


_ANY_VALUE = st.one_of(
    st.floats(0, 1),  # often sensible, so accepted policies get checked too
    st.floats(1, 100),
    st.floats(),
    st.integers(-3, 100),
    st.none(),
    st.booleans(),
    st.text(max_size=2),
)


@settings(max_examples=400)
@given(
    initial=_ANY_VALUE,
    multiplier=_ANY_VALUE,
    max_interval=_ANY_VALUE,
    jitter=_ANY_VALUE,
    timeout=_ANY_VALUE,
)
def test_a_policy_is_either_refused_with_value_error_or_paces_sanely(
    initial: Any, multiplier: Any, max_interval: Any, jitter: Any, timeout: Any
) -> None:
    try:
        policy = PollPolicy(
            initial=initial,
            multiplier=multiplier,
            max_interval=max_interval,
            jitter=jitter,
            timeout=timeout,
        )
    except ValueError:
        return
    assert policy.timeout is None or policy.timeout > 0
    intervals = policy.intervals(random.Random(0))
    for _ in range(40):
        assert 0 <= next(intervals) <= policy.max_interval * (1 + policy.jitter)


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_nonsense_wait_timeouts_raise_value_error(timeout: float, client: GPTunnelClient) -> None:
    with pytest.raises(ValueError, match="timeout"):
        client.wait_for_result("task-1", timeout=timeout)


# -- the deadline ---------------------------------------------------------------------


async def test_deadline_raises_wait_timeout_with_the_last_state(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(task_json(status="running", percent=42))
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_result("task-1", timeout=0.15)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.task_id == "task-1"
    assert caught.value.task is not None
    assert caught.value.task.percent == 42
    assert "42%" in str(caught.value)


async def test_a_last_read_before_the_deadline_sees_a_task_done_since_the_read_before(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    # Reads every 2 s with a 3 s deadline: the read after the one at 2 s would come past
    # the deadline. The task is done by then; a wait that skipped that read would report
    # it as not finished.
    api.script(*steps(("running", 10), ("running", 60), ("done", 100)))
    every_2s = PollPolicy(
        initial=2.0, multiplier=1.0, max_interval=2.0, jitter=0.0, strategy="exponential"
    )
    started = asyncio.get_running_loop().time()
    task = await client.wait_for_result("task-1", policy=every_2s, timeout=3.0)
    assert task.is_done
    assert len(api.requests) == 3
    assert asyncio.get_running_loop().time() - started < 3.0


@pytest.fixture
async def unretried(api: ScriptedAPI) -> AsyncIterator[GPTunnelClient]:
    """A client that makes each read once: a failed read is the wait's to ride through."""
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, max_retries=0, poll_policy=FAST
    ) as tunnel:
        yield tunnel


async def test_a_wait_that_only_failed_to_read_says_why_at_its_deadline(
    unretried: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(faults.answer(503, {"error": {"message": "upstream is down"}}))
    with pytest.raises(WaitTimeoutError) as caught:
        await unretried.wait_for_result("task-1", timeout=0.15)
    error = caught.value
    assert len(api.requests) > 1
    assert error.task is None
    assert isinstance(error.last_error, ServerError)
    assert error.last_error.status_code == 503
    assert error.__cause__ is error.last_error
    assert error.last_error.__traceback__ is None  # its frames held the waiter
    assert "no state read yet; its last read failed: ServerError" in str(error)
    assert "upstream is down" in str(error)
    assert "check base_url" not in str(error)  # the API answered: base_url is right


async def test_a_wait_whose_host_is_unreachable_names_the_connection_error(
    unused_tcp_port: int,
) -> None:
    async with GPTunnelClient(
        api_key=API_KEY,
        base_url=f"http://127.0.0.1:{unused_tcp_port}/v1",
        max_retries=0,
        poll_policy=FAST,
    ) as client:
        with pytest.raises(WaitTimeoutError) as caught:
            await client.wait_for_result("task-1", timeout=0.2)
    assert isinstance(caught.value.last_error, APIConnectionError)
    assert f"127.0.0.1:{unused_tcp_port}" in str(caught.value)
    assert str(caught.value).endswith("and that its server runs; no read reached the API)")
    assert str(caught.value).count("check base_url") == 1  # the read's error says it
    assert API_KEY not in str(caught.value)


async def test_a_wait_whose_reads_time_out_does_not_blame_base_url(
    unretried: GPTunnelClient, api: ScriptedAPI
) -> None:
    """The server was reached (it answered 408, or was slow): the host is right."""
    api.script(faults.answer(408, ""))
    with pytest.raises(WaitTimeoutError) as caught:
        await unretried.wait_for_result("task-1", timeout=0.15)
    assert isinstance(caught.value.last_error, APITimeoutError)
    assert "check base_url" not in str(caught.value)


async def test_a_deadline_inside_the_client_s_own_retries_still_says_why(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    """With the client's retries (max_retries=3, a first pause of 0.5 s or more) a wait
    of 0.3 s was cut during the pause after its first 503, and said only "no state read
    yet": the 503 was lost with the retries."""
    api.script(faults.answer(503, {"error": {"message": "upstream is down"}}))
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_result("task-1", timeout=0.3)
    error = caught.value
    assert len(api.requests) == 1  # cut in the pause before the client's first retry
    assert isinstance(error.last_error, ServerError) and error.last_error.status_code == 503
    assert error.__cause__ is error.last_error
    assert error.last_error.__traceback__ is None
    assert "no state read yet; its last read failed: ServerError: 503: upstream is down" in str(
        error
    )


async def test_a_wait_on_an_unreachable_host_with_retries_says_to_check_base_url(
    unused_tcp_port: int,
) -> None:
    async with GPTunnelClient(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{unused_tcp_port}/v1", poll_policy=FAST
    ) as client:  # the default max_retries
        with pytest.raises(WaitTimeoutError) as caught:
            await client.wait_for_result("task-1", timeout=0.3)
    assert isinstance(caught.value.last_error, APIConnectionError)
    assert str(caught.value).endswith("and that its server runs; no read reached the API)")
    assert str(caught.value).count("check base_url") == 1  # the read's error says it
    assert API_KEY not in str(caught.value)


async def test_retries_that_ended_in_a_read_leave_no_error_for_a_later_deadline(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    """The failure kept for a deadline that cuts the retries is put back once they end:
    a deadline that later cuts a read in flight does not report it."""
    api.script(faults.answer(503, ""), task_json(status="running", percent=7), faults.stall())
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_result("task-1", timeout=1.5)
    assert caught.value.last_error is None
    assert str(caught.value).endswith("(last seen running at 7%)")


async def test_a_read_that_succeeds_after_failures_clears_the_last_error(
    unretried: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(faults.answer(503, ""), "reset", task_json(status="running", percent=7))
    with pytest.raises(WaitTimeoutError) as caught:
        await unretried.wait_for_result("task-1", timeout=0.15)
    assert len(api.requests) > 3
    assert caught.value.last_error is None
    assert caught.value.__cause__ is None
    assert str(caught.value).endswith("(last seen running at 7%)")


async def test_deadline_bounds_a_request_in_flight(
    api: ScriptedAPI, patient: GPTunnelClient
) -> None:
    api.script(faults.stall())  # and the request would wait an hour: only the deadline ends it
    async with asyncio.timeout(HANG_GUARD):
        with pytest.raises(WaitTimeoutError) as caught:
            await patient.wait_for_result("task-1", timeout=0.2)
    assert caught.value.task is None


async def test_consumer_code_is_not_interrupted_but_no_poll_follows_the_deadline(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(task_json(status="running", percent=1))
    finished_slow_work: list[bool] = []

    async def slow_consumer() -> None:
        async for _event in client.wait_for_result("task-1", timeout=0.1):
            await asyncio.sleep(0.2)  # the consumer's own slow work, past the deadline
            finished_slow_work.append(True)

    with pytest.raises(WaitTimeoutError):
        await slow_consumer()
    assert finished_slow_work == [True]
    assert len(api.requests) == 1


async def test_timeout_none_means_no_deadline(api: ScriptedAPI, instant: None) -> None:
    policy = PollPolicy(initial=0.01, timeout=0.01)
    api.script(*steps(*[("running", 1)] * 20), task_json(status="done", percent=100))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, poll_policy=policy) as client:
        task = await client.wait_for_result("task-1", timeout=None)
    assert task.is_done


# -- both modes -----------------------------------------------------------------------


async def test_waiter_is_a_real_coroutine_for_asyncio_apis(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(task_json(status="done", percent=100))
    waiter = client.wait_for_result("task-1")
    assert isinstance(waiter, collections.abc.Coroutine)
    assert isinstance(waiter, collections.abc.AsyncIterator)
    assert (await asyncio.create_task(client.wait_for_result("a"))).is_done
    gathered = await asyncio.gather(client.wait_for_result("b"), client.wait_for_result("c"))
    assert all(task.is_done for task in gathered)
    assert (await asyncio.wait_for(client.wait_for_result("d"), timeout=5)).is_done
    waiter.close()  # never started: closing is a no-op


@pytest.mark.parametrize("mode", ["await", "iterate"])
@pytest.mark.parametrize("kind", ["plain", "async"])
async def test_on_progress_is_called_in_both_modes(
    mode: str, kind: str, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("running", 20), ("running", 70), ("done", 100)))
    seen: list[int] = []

    def plain(event: ProgressEvent) -> None:
        seen.append(event.percent)

    async def coroutine(event: ProgressEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.percent)

    callback = plain if kind == "plain" else coroutine
    waiter = client.wait_for_result("task-1", on_progress=callback)
    if mode == "await":
        await waiter
    else:
        await collect(waiter)
    assert seen == [20, 70, 100]


async def test_a_waiter_is_used_in_one_mode_once(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("running", 20), ("done", 100)))
    iterated = client.wait_for_result("task-1")
    await iterated.__anext__()
    with pytest.raises(UsageError):
        await iterated
    await iterated.aclose()
    awaited = client.wait_for_result("task-1")
    await awaited
    with pytest.raises(UsageError, match="was already awaited; iterate a new one"):
        await awaited.__anext__()
    with pytest.raises(UsageError, match="already awaited"):
        await awaited


SECOND_AWAITS: dict[str, Any] = {
    "await": lambda waiter: waiter,
    "create_task": lambda waiter: asyncio.ensure_future(waiter),
    "wait_for with a timeout": lambda waiter: asyncio.wait_for(waiter, 0.05),
}


@pytest.mark.parametrize("first_by", ["await", "create_task"])
@pytest.mark.parametrize("second", SECOND_AWAITS.values(), ids=SECOND_AWAITS.keys())
async def test_a_second_await_of_a_running_wait_is_refused_and_leaves_the_first_alone(
    client: GPTunnelClient, api: ScriptedAPI, first_by: str, second: Any
) -> None:
    api.script(*steps(("running", 20), ("running", 60), ("done", 100)))
    every_tenth = PollPolicy(initial=0.1, multiplier=1.0, max_interval=0.1, jitter=0.0)
    waiter = client.wait_for_result("task-1", policy=every_tenth)

    async def awaits() -> Any:
        return await waiter

    first = asyncio.ensure_future(waiter if first_by == "create_task" else awaits())
    await asyncio.sleep(0.05)  # the first wait is under way, between two reads
    with pytest.raises(UsageError, match="already being awaited"):
        await second(waiter)
    assert (await first).is_done  # not cancelled by the second's timeout, nor disturbed
    assert len(api.requests) == 3


async def test_a_wait_whose_task_was_cancelled_before_it_started_is_ended(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(*steps(("done", 100)))
    waiter = client.wait_for_result("task-1")
    running = asyncio.ensure_future(waiter)
    running.cancel()  # before its first step: no code of the wait ran
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(UsageError, match="was already awaited"):  # not "being awaited"
        await waiter
    assert api.requests == []


async def test_a_wait_awaited_from_its_own_callback_is_refused(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("running", 20), ("done", 100)))
    refused: list[BaseException] = []

    async def awaits_its_own_wait(event: ProgressEvent) -> None:
        if event.percent == 20:
            try:
                await waiter
            except UsageError as exc:
                refused.append(exc)

    waiter = client.wait_for_result("task-1", on_progress=awaits_its_own_wait)
    assert (await waiter).is_done
    assert len(refused) == 1


CALLS_FROM_WITHIN: dict[str, Any] = {
    "send": lambda waiter: waiter.send(None),
    "throw": lambda waiter: waiter.throw(ValueError("from the callback")),
}


@pytest.mark.parametrize("call", CALLS_FROM_WITHIN.values(), ids=CALLS_FROM_WITHIN.keys())
async def test_a_wait_stepped_from_its_own_callback_is_refused(
    client: GPTunnelClient, api: ScriptedAPI, instant: None, call: Any
) -> None:
    """Python's own ValueError ("coroutine already executing") came out of the wait."""
    api.script(*steps(("running", 20), ("done", 100)))
    refused: list[BaseException] = []

    def steps_its_own_wait(event: ProgressEvent) -> None:
        if event.percent == 20:
            try:
                call(waiter)
            except UsageError as exc:
                refused.append(exc)

    waiter = client.wait_for_result("task-1", on_progress=steps_its_own_wait)
    assert (await waiter).is_done  # refused, and the wait went on undisturbed
    assert len(refused) == 1


async def test_an_ended_iteration_yields_nothing_more(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("done", 100), ("failed", 0), ("running", 10)))
    finished = client.wait_for_result("task-1")
    assert len(await collect(finished)) == 1
    assert await collect(finished) == []
    failed = client.wait_for_result("task-2")
    with pytest.raises(TaskFailedError):
        await failed.__anext__()
    assert await collect(failed) == []
    closed = client.wait_for_result("task-3")
    await closed.aclose()  # never started: closed, as an async generator's aclose() does
    assert await collect(closed) == []
    stopped = client.wait_for_result("task-3")
    await stopped.__anext__()
    await stopped.aclose()
    assert await collect(stopped) == []


async def test_one_step_of_an_iteration_at_a_time(client: GPTunnelClient, api: ScriptedAPI) -> None:
    entered = script_a_stalled_read(api)
    waiter = client.wait_for_result("task-1")
    stepping = asyncio.create_task(waiter.__anext__())
    await entered.wait()
    with pytest.raises(UsageError, match="already waiting for its next event"):
        await waiter.__anext__()
    with pytest.raises(UsageError, match="cancel that instead"):
        await waiter.aclose()
    stepping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stepping
    assert connections_in_use(client) == 0
    with pytest.raises(UsageError, match="was cancelled"):  # not an empty loop: not done
        await collect(waiter)


async def test_a_step_of_an_iteration_is_a_real_coroutine(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    """``asyncio.create_task`` takes nothing else since Python 3.12."""
    api.script(task_json(status="done", percent=100))
    step = anext(client.wait_for_result("task-1"))
    assert inspect.iscoroutine(step)
    event = await asyncio.create_task(step)
    assert event.status == "done"


async def test_cancelling_an_iteration_while_it_sleeps(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(task_json(status="running", percent=10))
    seen: list[int] = []
    first = asyncio.Event()

    async def iterate() -> None:
        async for event in client.wait_for_result("task-1"):
            seen.append(event.percent)
            first.set()

    iterating = asyncio.create_task(iterate())
    await first.wait()
    await asyncio.sleep(0)  # let it go to sleep until the next read
    iterating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await iterating
    assert seen == [10]
    assert len(api.requests) == 1


@pytest.mark.parametrize("where", ["sleeping", "reading"])
async def test_a_step_after_a_cancelled_one_is_told_rather_than_ended_quietly(
    client: GPTunnelClient, api: ScriptedAPI, where: str
) -> None:
    """A timeout around one ``anext()`` (a keep-alive every few seconds) ended the wait,
    and the next ``anext()`` raised StopAsyncIteration: the loop ended as if the task
    were done, with no ``done`` event and no error."""
    api.script(task_json(status="running", percent=10))
    waiter = client.wait_for_result("task-1")
    assert (await anext(waiter)).percent == 10
    if where == "reading":
        script_a_stalled_read(api)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await anext(waiter)
    for _ in range(2):
        with pytest.raises(UsageError, match=r"was cancelled .* wait_for_result"):
            await anext(waiter)
    await waiter.aclose()  # closed on purpose: over, quietly
    with pytest.raises(StopAsyncIteration):
        await anext(waiter)
    assert connections_in_use(client) == 0


@pytest.mark.parametrize("closing", ["close", "aclose"])
async def test_closing_an_iterated_wait_between_steps_ends_it(
    client: GPTunnelClient, api: ScriptedAPI, closing: str
) -> None:
    """``close()`` (the coroutine protocol's, which a sync ``finally`` can call) did
    nothing to an iterated wait: the next ``anext()`` read the task on, as if the wait
    had never been closed."""
    api.script(task_json(status="running", percent=10))
    waiter = client.wait_for_result("task-1")
    assert (await anext(waiter)).percent == 10
    if closing == "close":
        waiter.close()
    else:
        await waiter.aclose()
    reads = len(api.requests)
    with pytest.raises(StopAsyncIteration):
        await anext(waiter)
    assert len(api.requests) == reads


# -- cancellation and logs ------------------------------------------------------------


async def test_cancelling_a_wait_leaves_no_task_or_connection(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    entered = script_a_stalled_read(api)
    waiting = asyncio.create_task(client.wait_for_result("task-1"))
    await entered.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert client._session is not None
    assert connections_in_use(client) == 0
    assert client_tasks() == []


async def test_each_poll_logs_at_debug_without_the_key(
    client: GPTunnelClient, api: ScriptedAPI, instant: None, caplog: pytest.LogCaptureFixture
) -> None:
    api.script(*steps(("running", 20), ("done", 100)))
    with caplog.at_level(logging.DEBUG, logger="gptunnel_async"):
        await client.wait_for_result("task-1")
    polls = [r.getMessage() for r in caplog.records if "status=" in r.getMessage()]
    assert polls[0].startswith("task task-1: status=running percent=20 read=1 next_wait=")
    assert len(polls) == 2
    assert API_KEY not in caplog.text


def test_fast_policy_is_fast() -> None:
    assert FAST.max_interval < 0.1


@pytest.mark.parametrize("mode", ["await", "iterate"])
async def test_closing_the_client_ends_a_sleeping_wait_with_usage_error(
    mode: str, api: ScriptedAPI
) -> None:
    api.script(task_json(status="running", percent=10))
    slow = PollPolicy(initial=600.0, max_interval=600.0, timeout=None)
    client = GPTunnelClient(api_key=API_KEY, base_url=api.base_url, poll_policy=slow)
    first = asyncio.Event()
    waiter = client.wait_for_result("task-1", on_progress=lambda _: first.set())
    if mode == "await":
        waiting: asyncio.Future[Any] = asyncio.ensure_future(waiter)
    else:
        waiting = asyncio.ensure_future(collect(waiter))
    await first.wait()
    await asyncio.sleep(0)  # let it go to sleep until its next read, ten minutes on
    await client.close()
    with pytest.raises(UsageError, match="closed"):
        await asyncio.wait_for(waiting, 5)  # a guard only: without close it sleeps 600 s
    assert len(api.requests) == 1
    with pytest.raises(UsageError, match="closed"):
        await client.wait_for_result("task-1")


@pytest.mark.parametrize("name", ["result", "status", "percent", "is_done", "urls", "id"])
def test_a_task_attribute_read_off_a_wait_says_to_await_it(
    name: str, client: GPTunnelClient
) -> None:
    waiter = client.wait_for_result("task-1")
    with pytest.raises(AttributeError, match=r"not the task.*await it") as caught:
        getattr(waiter, name)
    assert caught.value.name == name
    assert not hasattr(waiter, name)
    with pytest.raises(AttributeError, match=r"^'TaskWaiter' object has no attribute 'nope'$"):
        waiter.nope  # noqa: B018  (the attribute read is the test)
    waiter.close()


async def _closed(waiter: TaskWaiter[Task], how: str) -> None:
    """``waiter.close()``, or ``await waiter.aclose()`` (``contextlib.aclosing``'s)."""
    if how == "close":
        waiter.close()
    else:
        await waiter.aclose()


@pytest.mark.parametrize("how", ["close", "aclose"])
async def test_closing_a_wait_another_task_awaits_is_refused_and_leaves_it_alone(
    client: GPTunnelClient, api: ScriptedAPI, how: str
) -> None:
    """close() from another task broke the awaiting task's await with Python's
    RuntimeError ("cannot reuse already awaited coroutine") at its next step; aclose()
    returned as if it had closed the wait, which went on reading to its end."""
    api.script(*steps(("running", 20), ("running", 60), ("done", 100)))
    every_tenth = PollPolicy(initial=0.1, multiplier=1.0, max_interval=0.1, jitter=0.0)
    waiter = client.wait_for_result("task-1", policy=every_tenth)
    first = asyncio.ensure_future(waiter)
    await asyncio.sleep(0.05)  # between two reads
    with pytest.raises(UsageError, match="cancel the task that awaits it"):
        await _closed(waiter, how)
    assert (await first).is_done
    await _closed(waiter, how)  # ended: closing is a no-op
    assert len(api.requests) == 3


@pytest.mark.parametrize("how", ["close", "aclose"])
async def test_closing_a_wait_from_its_own_callback_is_refused(
    client: GPTunnelClient, api: ScriptedAPI, instant: None, how: str
) -> None:
    """Python's ValueError ("coroutine already executing") before; aclose() returned
    as if it had closed the wait."""
    api.script(*steps(("running", 20), ("done", 100)))
    refused: list[BaseException] = []

    async def closes_its_own_wait(event: ProgressEvent[Task]) -> None:
        if event.percent == 20:
            try:
                await _closed(waiter, how)
            except UsageError as exc:
                refused.append(exc)

    waiter = client.wait_for_result("task-1", on_progress=closes_its_own_wait)
    assert (await waiter).is_done
    assert len(refused) == 1


async def test_the_task_that_steps_a_wait_by_hand_may_close_it_between_steps(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    """The coroutine protocol: a task that drives a wait with send() and stops awaits
    nothing, and closes it as it would any coroutine (close() said another task awaited
    it, and left the wait's pause pending)."""
    api.script(*steps(("running", 20), ("done", 100)))
    waiter = client.wait_for_result("task-1")
    waiter.send(None)  # its first step, by hand, in this very task
    waiter.close()
    with pytest.raises(UsageError, match="already awaited"):
        await waiter
    assert api.requests == []


class _TakesTwo:
    def __call__(self, event: object, message: object) -> None:
        """A bot's edit helper, passed without its message."""


def _takes_event_and_message(event: object, message: object) -> None:
    """A bot's edit helper, passed without its message."""


ONE_ARGUMENT_REFUSED: dict[str, Any] = {
    "lambda: none": lambda: None,
    "two required": _takes_event_and_message,
    "keyword only": lambda *, event: None,
    "callable object of two": _TakesTwo(),
}

ONE_ARGUMENT_TAKEN: dict[str, Any] = {
    "plain": lambda event: None,
    "varargs": lambda *events: None,
    "a default after": lambda event, message=None: None,
    "partial of two": functools.partial(_takes_event_and_message, message=None),
    "bound method": [].append,
    "builtin": print,
    "builtin without a signature": max,
}


TAKES_THE_EVENT = r"on_progress must take one argument, as it is called \(on_progress\(event\)\)"


@pytest.mark.parametrize("callback", ONE_ARGUMENT_REFUSED.values(), ids=ONE_ARGUMENT_REFUSED.keys())
async def test_an_on_progress_that_cannot_take_the_event_is_refused_before_any_read(
    callback: Any, client: GPTunnelClient, api: ScriptedAPI
) -> None:
    """It failed with a bare TypeError at the first event, after a read."""
    with pytest.raises(ConfigurationError, match=TAKES_THE_EVENT):
        client.wait_for_result("task-1", on_progress=callback)
    with pytest.raises(ConfigurationError, match=TAKES_THE_EVENT):
        client.as_completed(["task-1"], on_progress=callback)
    assert api.requests == []


@pytest.mark.parametrize("callback", ONE_ARGUMENT_TAKEN.values(), ids=ONE_ARGUMENT_TAKEN.keys())
async def test_an_on_progress_that_can_take_the_event_is_taken(
    callback: Any, client: GPTunnelClient
) -> None:
    client.wait_for_result("task-1", on_progress=callback).close()


async def test_an_on_progress_that_returns_a_generator_ends_the_wait_with_configuration_error(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    """A generator function behind a decorator passes the check made with the wait: what
    it returns is refused (it was dropped, and its body never ran)."""
    api.script(*steps(("running", 20), ("done", 100)))
    ran: list[ProgressEvent[Any]] = []

    def stray_yield(event: ProgressEvent[Any]) -> Any:
        ran.append(event)
        yield

    def decorated(event: ProgressEvent[Any]) -> Any:
        return stray_yield(event)

    with pytest.raises(ConfigurationError, match="on_progress returned a generator"):
        await client.wait_for_result("task-1", on_progress=decorated)
    assert ran == []


STOPS: dict[str, Any] = {
    "StopAsyncIteration": StopAsyncIteration,
    "StopIteration": StopIteration,
}


@pytest.mark.parametrize("mode", ["await", "iterate"])
@pytest.mark.parametrize("kind", ["plain", "async"])
@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
async def test_an_on_progress_that_raises_a_stop_ends_the_wait_loudly(
    mode: str,
    kind: str,
    stop: type[Exception],
    client: GPTunnelClient,
    api: ScriptedAPI,
    instant: None,
) -> None:
    """A callback's StopAsyncIteration (an async iterator of its own ran out) ended an
    ``async for`` over the wait quietly, as if the wait were over, with no ``done``."""
    api.script(*steps(("running", 20), ("running", 70), ("done", 100)))
    seen: list[ProgressEvent[Any]] = []

    def plain(event: ProgressEvent[Any]) -> None:
        if event.percent == 70:
            raise stop("ran out")

    async def coroutine(event: ProgressEvent[Any]) -> None:
        plain(event)

    callback = plain if kind == "plain" else coroutine
    waiter = client.wait_for_result("task-1", on_progress=callback)
    waiting = waiter if mode == "await" else collect(waiter, seen)
    with pytest.raises(RuntimeError) as raised:
        await waiting
    if not (kind == "async" and stop is StopIteration):  # Python's own RuntimeError first
        assert isinstance(raised.value, UsageError)
        assert "on_progress raised" in str(raised.value)
    assert isinstance(raised.value.__cause__, stop)
    assert [event.percent for event in seen] == ([20] if mode == "iterate" else [])


def cancelled_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.cancel()
    return future


async def awaits_a_cancelled_future(event: ProgressEvent[Any]) -> None:
    if event.percent == 70:
        await cancelled_future()


def returns_a_cancelled_future(event: ProgressEvent[Any]) -> asyncio.Future[None] | None:
    return cancelled_future() if event.percent == 70 else None


def raises_cancelled_error(event: ProgressEvent[Any]) -> None:
    if event.percent == 70:
        raise asyncio.CancelledError


STRAY_CANCELLATIONS: dict[str, Any] = {
    "awaits a cancelled future": awaits_a_cancelled_future,
    "returns a cancelled future": returns_a_cancelled_future,
    "raises CancelledError": raises_cancelled_error,
}


@pytest.mark.parametrize("mode", ["await", "iterate"])
@pytest.mark.parametrize("callback", STRAY_CANCELLATIONS.values(), ids=STRAY_CANCELLATIONS.keys())
async def test_an_on_progress_cancellation_not_of_the_wait_ends_it_with_usage_error(
    mode: str, callback: Any, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    """A callback's own CancelledError (an edit call whose future was cancelled) reached
    the caller as a cancellation it never asked for: its task ended cancelled, with no
    result and no error (a TaskGroup drops a cancelled child silently)."""
    api.script(*steps(("running", 20), ("running", 70), ("done", 100)))
    seen: list[ProgressEvent[Any]] = []
    waiter = client.wait_for_result("task-1", on_progress=callback)
    waiting = asyncio.ensure_future(waiter if mode == "await" else collect(waiter, seen))
    with pytest.raises(UsageError, match="on_progress raised CancelledError") as raised:
        await waiting
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    assert [event.percent for event in seen] == ([20] if mode == "iterate" else [])


@pytest.mark.parametrize("mode", ["await", "iterate"])
async def test_an_on_progress_that_cancels_its_own_task_cancels_the_wait(
    mode: str, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*steps(("running", 20), ("running", 70), ("done", 100)))

    async def cancel_and_go_on(event: ProgressEvent[Any]) -> None:
        if event.percent == 70:
            running = asyncio.current_task()
            assert running is not None
            running.cancel()
            await asyncio.sleep(0)

    waiter = client.wait_for_result("task-1", on_progress=cancel_and_go_on)
    waiting = asyncio.ensure_future(waiter if mode == "await" else collect(waiter, []))
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


# -- which task's wait an error ended ---------------------------------------------------

NAMED = "raised by the wait for faceswap task 'task-1'"


class _BotBroke(Exception):
    """What a bot's own progress callback raises."""


async def _ended(client: GPTunnelClient, mode: str, **options: Any) -> BaseException:
    """The error that ends a wait for ``task-1``, awaited or iterated."""
    waiter = client.wait_for_result("task-1", **options)
    with pytest.raises((GPTunnelError, _BotBroke)) as raised:
        await (waiter if mode == "await" else collect(waiter))
    return raised.value


@pytest.mark.parametrize("mode", ["await", "iterate"])
@pytest.mark.parametrize(
    "ending", ["401", "404", "closed client", "on_progress's own", "timeout", "failed task"]
)
async def test_an_error_that_ends_a_wait_names_its_task_once(
    mode: str, ending: str, client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    """Among many waits (gather, as_completed, a bot's handlers), an error whose text
    does not name the task says in a note which task's wait it ended; one that names it
    (a failed task, a timeout) gets no note."""
    running = task_json(status="running", percent=5)
    options: dict[str, Any] = {}
    if ending in ("401", "404"):
        api.script(running, (int(ending), {"error": {"message": "x"}}, {}))
    elif ending == "failed task":
        api.script(task_json(status="failed", error="bad image"))
    else:
        api.script(running, *[task_json(status="running", percent=5)] * 50)
    if ending == "closed client":
        options["on_progress"] = lambda event: asyncio.ensure_future(client.close())
    elif ending == "on_progress's own":
        options["on_progress"] = _broke
    elif ending == "timeout":
        options["timeout"] = 0.05
    error = await _ended(client, mode, **options)
    notes = getattr(error, "__notes__", [])
    if ending in ("timeout", "failed task"):
        assert isinstance(error, WaitTimeoutError | TaskFailedError)
        assert "task-1" in str(error) and notes == []
    else:
        assert notes == [NAMED]
        assert "task-1" not in str(error)  # the note is what names it
    if ending == "closed client":
        assert isinstance(error, UsageError)


def _broke(event: ProgressEvent[Any]) -> None:
    raise _BotBroke("message is not modified")


async def test_a_cancelled_wait_gets_no_note(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(*[task_json(status="running", percent=5)] * 50)
    waiting = asyncio.ensure_future(client.wait_for_result("task-1", timeout=None))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError) as raised:
        await waiting
    assert getattr(raised.value, "__notes__", []) == []


async def test_the_note_survives_a_pickle_of_the_error(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(task_json(status="running", percent=5), (401, {"error": {"message": "x"}}, {}))
    error = await _ended(client, "await")
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is AuthenticationError and restored.__notes__ == [NAMED]


# -- what a sleeping wait holds -------------------------------------------------------


async def test_a_sleeping_wait_awaits_its_pause_with_no_coroutine_between(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(*steps(("running", 10)))
    first_read = asyncio.Event()
    asleep = PollPolicy(initial=600.0, max_interval=600.0, timeout=None)
    waiter = client.wait_for_result("task-1", policy=asleep, on_progress=lambda _: first_read.set())
    waiting = asyncio.ensure_future(waiter)
    await first_read.wait()  # the same step went on to the pause
    running = waiter._running
    assert running is not None
    # The future's own iterator, not asyncio.sleep's coroutine (256 bytes more).
    assert not inspect.iscoroutine(running.cr_await)
    (pause,) = [held for held in gc.get_referents(running.cr_await) if asyncio.isfuture(held)]
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pause.cancelled()
    assert pause.timer.cancelled()  # not left scheduled for ten minutes


@pytest.mark.parametrize("mode", ["await", "async for"])
async def test_a_sleeping_wait_keeps_no_event_it_handed_on(
    client: GPTunnelClient, api: ScriptedAPI, mode: str
) -> None:
    api.script(*steps(("running", 10)))
    handed: list[weakref.ref[ProgressEvent[Task]]] = []
    first_read = asyncio.Event()

    def keep_a_weak_reference(event: ProgressEvent[Task]) -> None:
        handed.append(weakref.ref(event))
        first_read.set()

    asleep = PollPolicy(initial=600.0, max_interval=600.0, timeout=600.0)
    waiter = client.wait_for_result("task-1", policy=asleep, on_progress=keep_a_weak_reference)
    if mode == "await":
        waiting = asyncio.ensure_future(waiter)
        await first_read.wait()
    else:
        await waiter.__anext__()
        waiting = asyncio.ensure_future(waiter.__anext__())
        await asyncio.sleep(0)  # the second step goes to sleep
    gc.collect()
    assert handed[0]() is None  # its state says when to read next: 112 bytes and more
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
