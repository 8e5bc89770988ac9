"""``throttle``: progress at most once per interval, never two alike, the last one always."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import (
    ConfigurationError,
    ProgressEvent,
    Task,
    TaskFailedError,
    UsageError,
    throttle,
)
from gptunnel_async._sansio.throttle import FORGET_AFTER, FORGET_FROM, ThrottleGate, ThrottleGates
from gptunnel_async.fleet import FleetProgress
from gptunnel_async.testing import FakeGPTunnel, instant_waits

# -- the gate: pure, with the time given ----------------------------------------------


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        # (time, key) offered -> keys delivered at once
        ([(0.0, "a"), (0.5, "b"), (1.0, "c")], ["a", "c"]),
        ([(0.0, "a"), (1.0, "b"), (2.0, "c")], ["a", "b", "c"]),
        ([(0.0, "a"), (1.5, "a"), (3.0, "a")], ["a"]),
        ([(0.0, "a"), (0.2, "b"), (0.4, "a"), (2.0, "a")], ["a"]),
        ([(0.0, "a"), (0.0, "b"), (0.0, "c")], ["a"]),
    ],
)
def test_the_gate_delivers_at_most_one_per_interval_and_never_two_alike(
    offers: Sequence[tuple[float, str]], expected: list[str]
) -> None:
    gate: ThrottleGate[str] = ThrottleGate(1.0)
    delivered = [gate.offer(key, key, now) for now, key in offers]
    assert [key for key in delivered if key is not None] == expected


def test_the_gate_holds_only_the_latest_event_until_its_time() -> None:
    gate: ThrottleGate[str] = ThrottleGate(1.0)
    assert gate.due_in(0.0) is None
    assert gate.offer("a", "a", 0.0) == "a"
    assert gate.offer("b", "b", 0.3) is None
    assert gate.offer("c", "c", 0.6) is None
    assert gate.due_in(0.6) == pytest.approx(0.4)
    assert gate.take(0.9) is None
    assert gate.take(1.0) == "c"
    assert gate.due_in(1.0) is None
    assert gate.offer("d", "d", 1.5) is None
    assert gate.release(1.5) == "d"
    with pytest.raises(LookupError):
        gate.release(1.5)


def test_an_event_alike_the_last_delivered_drops_the_held_one() -> None:
    gate: ThrottleGate[str] = ThrottleGate(1.0)
    gate.offer("running 50", "r50", 0.0)
    gate.offer("processing 50", "p50", 0.1)
    assert gate.offer("running 50 again", "r50", 0.2) is None
    assert gate.due_in(0.2) is None


@given(
    st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.integers(0, 3)), min_size=1, max_size=40
    ),
    st.floats(0, 1.5, allow_nan=False),
)
def test_the_gate_keeps_its_promises_for_any_sequence(
    steps: list[tuple[float, int]], every: float
) -> None:
    gate: ThrottleGate[int] = ThrottleGate(every)
    now, delivered = 0.0, []
    for gap, key in steps:
        now += gap
        held = gate.take(now)
        if held is not None:
            delivered.append((now, held))
        ready = gate.offer(key, key, now)
        if ready is not None:
            delivered.append((now, ready))
    if gate.due_in(now) is not None:
        delivered.append((now + every, gate.release(now + every)))
    times = [at for at, _ in delivered]
    keys = [key for _, key in delivered]
    assert all(later - earlier >= every - 1e-9 for earlier, later in itertools.pairwise(times))
    assert all(a != b for a, b in itertools.pairwise(keys))
    assert keys[0] == steps[0][1]
    # the last state offered is what the reader ends up seeing
    assert keys[-1] == steps[-1][1]


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        # (time, task, key) offered -> (task, key) delivered at once
        ([(0.0, "a", 1), (0.0, "b", 1), (0.5, "a", 2), (0.5, "b", 2)], [("a", 1), ("b", 1)]),
        (
            [(0.0, "a", 1), (0.5, "b", 1), (1.0, "a", 2), (1.2, "b", 2)],
            [("a", 1), ("b", 1), ("a", 2)],
        ),
        ([(0.0, "a", 1), (0.1, "a", 1), (0.2, "b", 1), (0.3, "b", 1)], [("a", 1), ("b", 1)]),
        (
            [(0.0, "a", 1), (0.0, "b", 1), (1.5, "b", 2), (1.5, "a", 1)],
            [("a", 1), ("b", 1), ("b", 2)],
        ),
    ],
)
def test_gates_throttle_each_task_on_its_own(
    offers: Sequence[tuple[float, str, int]], expected: list[tuple[str, int]]
) -> None:
    gates: ThrottleGates[tuple[str, int]] = ThrottleGates(1.0)
    delivered = [gates.offer(task, (task, key), key, now) for now, task, key in offers]
    assert [event for event in delivered if event is not None] == expected


def test_gates_hand_over_each_task_s_held_event_when_its_own_time_comes() -> None:
    gates: ThrottleGates[str] = ThrottleGates(1.0)
    assert gates.due_in(0.0) is None and gates.drain(0.0) == []
    gates.offer("a", "a1", "a1", 0.0)
    gates.offer("b", "b1", "b1", 0.4)
    gates.offer("a", "a2", "a2", 0.5)  # held until 1.0
    gates.offer("b", "b2", "b2", 0.6)  # held until 1.4
    gates.offer("a", "a3", "a3", 0.7)  # replaces a2
    assert gates.due_in(0.7) == pytest.approx(0.3)
    assert gates.take(0.9) == []
    assert gates.take(1.0) == ["a3"]
    assert gates.due_in(1.0) == pytest.approx(0.4)
    gates.offer("a", "a4", "a4", 1.1)  # held until 2.0
    drained = gates.drain(1.1)
    assert [event for _, event in drained] == ["b2", "a4"]
    assert [due for due, _ in drained] == pytest.approx([0.3, 0.9])
    assert gates.due_in(1.1) is None


def test_gates_of_tasks_gone_quiet_are_forgotten() -> None:
    gates: ThrottleGates[int] = ThrottleGates(1.0)
    for task in range(10 * FORGET_FROM):  # a long-lived stream: each task seen once
        assert gates.offer(task, task, task, float(task) * FORGET_AFTER) == task
    assert len(gates._gates) <= 2 * FORGET_FROM
    late = 10 * FORGET_FROM * FORGET_AFTER
    gates.offer("busy", 1, 1, late)  # a task that holds an event is never forgotten
    gates.offer("busy", 2, 2, late + 0.5)
    for task in range(FORGET_FROM, 4 * FORGET_FROM):
        gates.offer(("again", task), task, task, late + 0.6)
    [(due, event)] = gates.drain(late + 0.6)
    assert due == pytest.approx(0.4)
    assert event == 2


@pytest.mark.parametrize("every", [0.0, 1.0])
def test_gates_drop_a_repeat_of_a_task_s_state_among_thousands_of_tasks(every: float) -> None:
    """Past 64 tasks, idle gates were forgotten with what they had delivered: with
    ``every=0`` (or under instant waits) no repeat was dropped any more."""
    gates: ThrottleGates[tuple[int, int]] = ThrottleGates(every)
    delivered = []
    for now in range(3):  # three rounds, a second apart, each task offering the same state
        for task in range(5 * FORGET_FROM):
            ready = gates.offer(task, (task, 50), 50, float(now))
            if ready is not None:
                delivered.append(ready)
    assert sorted(delivered) == [(task, 50) for task in range(5 * FORGET_FROM)]


@given(
    st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.sampled_from("abc"), st.integers(0, 3)),
        min_size=1,
        max_size=60,
    ),
    st.floats(0, 1.5, allow_nan=False),
)
def test_gates_keep_the_gate_s_promises_for_each_task_of_any_mix(
    steps: list[tuple[float, str, int]], every: float
) -> None:
    gates: ThrottleGates[tuple[str, int]] = ThrottleGates(every)
    now, delivered = 0.0, []
    for gap, task, key in steps:
        now += gap
        delivered += [(now, event) for event in gates.take(now)]
        ready = gates.offer(task, (task, key), key, now)
        if ready is not None:
            delivered.append((now, ready))
    delivered += [(now + due, event) for due, event in gates.drain(now)]
    for task in {task for _, task, _ in steps}:
        times = [at for at, (of, _) in delivered if of == task]
        keys = [key for _, (of, key) in delivered if of == task]
        offered = [key for _, of, key in steps if of == task]
        assert all(later - earlier >= every - 1e-9 for earlier, later in itertools.pairwise(times))
        assert all(a != b for a, b in itertools.pairwise(keys))
        assert keys[0] == offered[0]
        assert keys[-1] == offered[-1]


# -- the async iterator, on the real clock --------------------------------------------


def _event(status: str, percent: int) -> ProgressEvent[Task]:
    task = Task(id="t1", status=status, percent=percent)
    return ProgressEvent(task_id="t1", status=status, percent=percent, task=task, elapsed=0.0)


class Source:
    """Events, one per step of the event loop; records whether it was closed."""

    def __init__(self, events: Sequence[ProgressEvent[Task]], *, error: Exception | None = None):
        self.events = list(events)
        self.error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[ProgressEvent[Task]]:
        return self._run()

    async def _run(self) -> AsyncIterator[ProgressEvent[Task]]:
        try:
            for event in self.events:
                await asyncio.sleep(0)
                yield event
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


def _keys(events: Sequence[ProgressEvent[Any]]) -> list[tuple[str, int]]:
    return [(event.status, event.percent) for event in events]


async def test_a_fast_stream_keeps_its_order_its_last_event_and_no_two_alike() -> None:
    source = [_event("running", percent) for percent in range(0, 100, 5)]
    source += [_event("running", 95), _event("done", 100)]
    got = [event async for event in throttle(Source(source), every=0.05)]
    assert got[0] is source[0]
    assert got[-1] is source[-1]
    assert all(a != b for a, b in itertools.pairwise(_keys(got)))
    positions = [source.index(event) for event in got]
    assert positions == sorted(positions)


async def test_the_interval_is_counted_on_the_clock_given() -> None:
    ticks = itertools.count()
    source = [_event("running", percent) for percent in range(10)]
    got = [event async for event in throttle(Source(source), every=3, clock=lambda: next(ticks))]
    assert got[0] is source[0] and got[-1] is source[-1]
    assert len(got) < len(source)


async def test_with_no_interval_every_change_goes_and_repeats_do_not() -> None:
    source = [_event("queued", 0), _event("queued", 0), _event("running", 50)]
    source += [_event("processing", 50), _event("running", 50), _event("done", 100)]
    got = [event async for event in throttle(Source(source), every=0)]
    assert _keys(got) == [
        ("queued", 0),
        ("running", 50),
        ("processing", 50),
        ("running", 50),
        ("done", 100),
    ]


async def test_instant_waits_skip_the_interval() -> None:
    source = [_event("running", percent) for percent in range(0, 101, 10)]
    with instant_waits():
        got = [event async for event in throttle(Source(source), every=3600)]
    assert got == source


async def test_an_error_from_the_wait_is_raised_and_the_source_closed() -> None:
    source = Source([_event("running", 10)], error=TaskFailedError(Task(id="t1", status="failed")))
    events = throttle(source, every=0)
    assert _keys([await anext(events)]) == [("running", 10)]
    with pytest.raises(TaskFailedError):
        await anext(events)
    assert source.closed


async def test_leaving_early_closes_the_source() -> None:
    source = Source([_event("running", percent) for percent in range(50)])
    events = throttle(source, every=0)
    async for _ in events:
        break
    await events.aclose()
    assert source.closed


@pytest.mark.parametrize("every", [-1, float("nan"), float("inf"), 10**400, True, "1"])
async def test_a_bad_interval_is_refused(every: Any) -> None:
    with pytest.raises(ConfigurationError, match="every"):
        await anext(throttle(Source([]), every=every))


async def test_a_clock_that_gives_no_time_at_once_is_refused() -> None:
    async def clock() -> float:
        return 0.0

    with pytest.raises(ConfigurationError, match="clock must be a plain function"):
        await anext(throttle(Source([]), every=1, clock=clock))  # type: ignore[arg-type]


async def test_a_real_wait_throttled_ends_with_its_done_event() -> None:
    steps = [("queued", 0)] + [("running", percent) for percent in range(5, 100, 5)]
    async with FakeGPTunnel() as fake:
        task_id = fake.script_task(steps=[*steps, ("done", 100)])
        with instant_waits():
            async with fake.client() as client:
                got = [event async for event in throttle(client.wait_for_result(task_id))]
    assert got[-1].is_done
    assert _keys(got) == [*steps, ("done", 100)]


async def test_a_wait_whose_callback_cancels_its_own_read_ends_with_usage_error() -> None:
    """The cancelled read's CancelledError was raised into the loop over ``throttle``,
    which nothing had cancelled."""
    steps = [("running", 10), ("running", 50), ("done", 100)]

    def cancel_own_read(event: ProgressEvent[Task]) -> None:
        if event.percent == 50:
            running = asyncio.current_task()
            assert running is not None
            running.cancel()

    got: list[int] = []
    async with FakeGPTunnel() as fake:
        task_id = fake.script_task(steps=steps)
        with instant_waits():
            async with fake.client() as client:
                waiter = client.wait_for_result(task_id, on_progress=cancel_own_read)
                events = throttle(waiter, every=0)
                got.append((await anext(events)).percent)
                with pytest.raises(UsageError, match="cancelled from within"):
                    await anext(events)
    assert got == [10]
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_leaving_a_real_wait_early_closes_it() -> None:
    async with FakeGPTunnel() as fake:
        task_id = fake.script_task(steps=[("running", p) for p in range(0, 100, 10)])
        async with fake.client() as client:
            waiter = client.wait_for_result(task_id)
            events = throttle(waiter, every=0)
            first = await anext(events)
            await events.aclose()
            reads = len(fake.requests)
            await asyncio.sleep(0.05)
    assert first.percent == 0
    assert len(fake.requests) == reads
    with pytest.raises(StopAsyncIteration):
        await anext(waiter)


def _notice(task_id: str, percent: int) -> FleetProgress:
    return FleetProgress(task_id, "running", percent, {"chat_id": task_id}, None)


class Notices:
    """A fleet's progress stream: notices of several tasks, interleaved, then closed."""

    def __init__(self, notices: Sequence[FleetProgress]) -> None:
        self.notices = list(notices)
        self.closed = False

    def __aiter__(self) -> AsyncIterator[FleetProgress]:
        return self._run()

    async def _run(self) -> AsyncIterator[FleetProgress]:
        try:
            for notice in self.notices:
                await asyncio.sleep(0)
                yield notice
        finally:
            self.closed = True


async def test_per_task_a_busy_task_never_holds_back_another_s_progress() -> None:
    busy = [_notice("busy", percent) for percent in range(0, 100, 2)]
    notices = [*busy[:25], _notice("quiet", 10), *busy[25:], _notice("quiet", 20)]
    got = [notice async for notice in throttle(Notices(notices), every=0.05, per_task=True)]
    quiet = [notice for notice in got if notice.task_id == "quiet"]
    assert [notice.percent for notice in quiet] == [10, 20]  # not held behind "busy"'s events
    busy_got = [notice for notice in got if notice.task_id == "busy"]
    assert busy_got[0] is busy[0] and busy_got[-1] is busy[-1]
    assert len(busy_got) < len(busy)


async def test_without_per_task_one_interval_holds_every_task() -> None:
    notices = [_notice("a", 10), _notice("b", 10), _notice("a", 20), _notice("b", 20)]
    got = [notice async for notice in throttle(Notices(notices), every=0.2)]
    assert [(n.task_id, n.percent) for n in got] == [("a", 10), ("b", 20)]


async def test_per_task_each_task_s_last_notice_comes_when_the_stream_ends() -> None:
    notices = [_notice(task, percent) for percent in (10, 20, 30) for task in "abc"]
    source = Notices(notices)
    got = [notice async for notice in throttle(source, every=0.2, per_task=True)]
    assert sorted((n.task_id, n.percent) for n in got) == [
        (task, percent) for task in "abc" for percent in (10, 30)
    ]
    assert source.closed


async def test_aclosing_a_throttle_closes_its_source_at_once() -> None:
    source = Notices([_notice("a", percent) for percent in range(50)])
    async with contextlib.aclosing(throttle(source, every=0, per_task=True)) as events:
        async for _ in events:
            break
    assert source.closed


@pytest.mark.parametrize("per_task", [1, None, "yes"])
async def test_per_task_must_be_a_bool(per_task: Any) -> None:
    with pytest.raises(ConfigurationError, match="per_task must be a bool"):
        await anext(throttle(Notices([]), per_task=per_task))


_NOT_SECONDS = st.one_of(
    st.datetimes(),
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    st.timedeltas(),
    st.just(10**400),
)


@given(_NOT_SECONDS)
async def test_a_clock_that_gives_no_seconds_is_a_configuration_error(reading: Any) -> None:
    """``clock=datetime.now`` (a datetime) raised TypeError from deep in the arithmetic,
    or a NaN clock held events forever; the source wait is closed all the same."""
    source = Source([_event("running", 10), _event("done", 100)])
    with pytest.raises(ConfigurationError, match="clock must give the time in seconds"):
        async for _ in throttle(source, every=1, clock=lambda: reading):
            pass


@pytest.mark.parametrize(
    "clock", [lambda now: 0.0, lambda *, tz: 0.0], ids=["an argument", "a keyword-only"]
)
async def test_a_clock_that_cannot_be_called_without_arguments_is_refused(clock: Any) -> None:
    """It failed with a bare TypeError at its first reading."""
    with pytest.raises(ConfigurationError, match=r"clock must take no argument.*\(clock\(\)\)"):
        await anext(throttle(Source([_event("running", 10)]), every=1, clock=clock))


async def test_a_clock_of_any_real_number_is_read() -> None:
    """An int, a float subclass or a Fraction is seconds as well."""
    from fractions import Fraction

    for reading in (7, Fraction(7, 2), float(3)):
        source = [_event("running", 10), _event("done", 100)]
        got = [e async for e in throttle(Source(source), every=1, clock=lambda: reading)]  # noqa: B023
        assert got[-1] is source[-1]


async def _never_iterated(ended: str) -> None:
    async with FakeGPTunnel() as fake, fake.client() as client:
        events = throttle(client.wait_for_result(fake.script_task(steps=[("done", 100)])))
        if ended == "aclose":
            await events.aclose()
        del events
        gc.collect()
        assert fake.requests == []


@pytest.mark.parametrize("ended", ["dropped", "aclose"])
async def test_a_throttle_never_iterated_drops_its_wait_without_a_warning(ended: str) -> None:
    """A throttle left before its loop (``contextlib.aclosing(throttle(waiter))`` whose
    block raised first, say) made the wait it was handed warn that it "was never
    awaited or iterated (a missing await?)": it was handed over, not forgotten."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await _never_iterated(ended)
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
