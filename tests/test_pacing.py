"""How waits time their reads: predictive polling against plain exponential backoff.

The waits run against a loopback server on a virtual clock: every pause the SDK asks
for is recorded and moves the event loop's clock forward at once, and nothing else does
(the real time a read takes counts as none), so a two-minute task takes milliseconds and
its schedule is exact however loaded the machine is.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError, GPTunnelClient, PollPolicy, _timing
from gptunnel_async._sansio.pacing import Pace, next_pause
from gptunnel_async.testing import FakeGPTunnel

from .conftest import API_KEY, ScriptedAPI, task_json


@dataclass
class VirtualClock:
    """The loop's clock as it was at the start, plus every pause asked for since;
    ``asked`` lists those pauses.

    Hand-made rather than looptime's: the tests read the pauses the SDK asked for, and
    only those move the clock. No timer of the loop fires while it stands (the waits
    here have no deadline; aiohttp's timers are only cancelled).
    """

    start: float
    offset: float = 0.0
    asked: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.start + self.offset

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.offset += seconds
        await asyncio.sleep(0)


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    loop = asyncio.get_running_loop()
    virtual = VirtualClock(loop.time())
    monkeypatch.setattr(loop, "time", virtual.time)
    monkeypatch.setattr(_timing, "sleep", virtual.sleep)
    return virtual


@dataclass
class TimedTask:
    """A reply that runs a task of ``duration`` seconds from its first read.

    ``percent`` follows ``progress`` (a function of the elapsed fraction, 0 to 1); the
    task is ``done`` once ``duration`` has passed.
    """

    duration: float
    progress: Callable[[float], float] = field(default=lambda fraction: 100 * fraction)
    started: float | None = None
    reads: int = 0

    async def __call__(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        self.started = now if self.started is None else self.started
        self.reads += 1
        fraction = (now - self.started) / self.duration
        if fraction >= 1:
            return web.json_response(task_json(status="done", percent=100))
        return web.json_response(task_json(status="running", percent=int(self.progress(fraction))))

    @property
    def done_at(self) -> float:
        assert self.started is not None
        return self.started + self.duration


async def wait_and_measure(
    api: ScriptedAPI, task: TimedTask, policy: PollPolicy
) -> tuple[int, float]:
    """Wait for ``task``; return the reads it cost and how late its ``done`` was seen."""
    api.script(task)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url) as client:
        await client.wait_for_result("task-1", policy=policy)
        finished = asyncio.get_running_loop().time()
    return task.reads, finished - task.done_at


STEADY = PollPolicy(jitter=0.0, timeout=None)
"""The default policy, without jitter so schedules are exact."""

ROUNDING = 1e-9
"""Slack for float rounding: a pause is a due time less the clock, both large floats, so
a nominal 10 s pause can come out as 10.000000000000028."""


def exponential_waits(policy: PollPolicy, count: int) -> list[float]:
    intervals = policy.intervals(random.Random(0))
    return [0.0] + [next(intervals) for _ in range(count)]


async def test_a_long_task_costs_few_reads_and_its_done_is_seen_soon(
    api: ScriptedAPI, clock: VirtualClock
) -> None:
    reads, late = await wait_and_measure(api, TimedTask(120.0), STEADY)
    assert reads <= 20  # a fixed one-second loop reads 121 times
    assert 0 <= late < 1.5
    # Each wait is its due time less the time since the read: a hair below nominal.
    assert all(
        STEADY.initial - 0.01 <= wait <= STEADY.max_interval + ROUNDING for wait in clock.asked[1:]
    )


async def test_far_from_the_finish_reads_come_every_max_interval(
    api: ScriptedAPI, clock: VirtualClock
) -> None:
    await wait_and_measure(api, TimedTask(120.0), STEADY)
    ramp = exponential_waits(STEADY, 3)
    assert clock.asked[:4] == pytest.approx(ramp, abs=0.01)  # until percent has risen twice
    middle = clock.asked[5:-3]
    assert middle and all(wait == pytest.approx(STEADY.max_interval, abs=0.01) for wait in middle)


async def test_exponential_strategy_keeps_plain_backoff(
    api: ScriptedAPI, clock: VirtualClock
) -> None:
    policy = PollPolicy(jitter=0.0, timeout=None, strategy="exponential")
    reads, late = await wait_and_measure(api, TimedTask(120.0), policy)
    assert clock.asked == pytest.approx(exponential_waits(policy, reads - 1), abs=0.01)
    assert late <= policy.max_interval + ROUNDING


async def test_a_task_that_reports_no_progress_is_polled_with_plain_backoff(
    api: ScriptedAPI, clock: VirtualClock
) -> None:
    reads, _ = await wait_and_measure(api, TimedTask(60.0, progress=lambda _: 0), STEADY)
    assert clock.asked == pytest.approx(exponential_waits(STEADY, reads - 1), abs=0.01)


async def test_an_overdue_finish_backs_off_again_instead_of_hammering(
    api: ScriptedAPI, clock: VirtualClock
) -> None:
    def fast_then_stuck(fraction: float) -> float:
        return min(99.0, 1000 * fraction)  # 99 % after a tenth of the time, then nothing

    reads, late = await wait_and_measure(api, TimedTask(100.0, progress=fast_then_stuck), STEADY)
    assert reads <= 25
    assert late <= STEADY.max_interval + ROUNDING
    assert max(clock.asked) == pytest.approx(STEADY.max_interval, abs=0.01)


def test_predictive_waits_stay_between_initial_and_max_interval() -> None:
    @given(
        st.lists(st.tuples(st.floats(0.01, 30.0), st.integers(0, 100)), max_size=40),
        st.sampled_from([0.0, 0.1, 0.5]),
    )
    def check(reads: list[tuple[float, int]], jitter: float) -> None:
        policy = PollPolicy(initial=1.0, multiplier=1.5, max_interval=10.0, jitter=jitter)
        seed = random.Random(1).getrandbits(64)
        pace = Pace.start(policy)
        now, percent = 0.0, 0
        for gap, seen in reads:
            now += gap
            percent = max(percent, seen)  # the waiter never lets percent fall
            pace, wait = next_pause(policy, pace, now, percent, seed)
            assert policy.initial * (1 - jitter) <= wait <= policy.max_interval * (1 + jitter)

    check()


def test_a_failed_read_takes_the_next_backoff_step() -> None:
    pace, waits, now = Pace.start(STEADY), [], 0.0
    for _ in range(3):
        pace, wait = next_pause(STEADY, pace, now, None, seed=0)
        now += wait
        waits.append(wait)
    assert waits == [1.0, 1.5, 2.25]


def test_default_strategy_is_predictive_and_nonsense_is_refused() -> None:
    assert PollPolicy().strategy == "predictive"
    with pytest.raises(ValueError, match="strategy"):
        PollPolicy(strategy="psychic")  # type: ignore[arg-type]


NO_DEADLINE_HINT = "must be a finite number of seconds > 0, or None for no deadline, got "


@pytest.mark.parametrize(("timeout", "shown"), [(0, "0"), (-5, "-5"), (float("inf"), "inf")])
async def test_a_wait_timeout_out_of_range_says_none_means_no_deadline(
    gptunnel_fake: FakeGPTunnel, timeout: float, shown: str
) -> None:
    """``timeout=0`` and ``timeout=float("inf")`` said "or None" without saying what None
    does; a user who wants no deadline (inf) needs to read that None is it."""
    with pytest.raises(ConfigurationError) as from_policy:
        PollPolicy(timeout=timeout)
    task_id = gptunnel_fake.script_task(steps=[("done", 100)])
    async with gptunnel_fake.client() as client:
        with pytest.raises(ConfigurationError) as from_wait:
            await client.wait_for_result(task_id, timeout=timeout)
    for caught in (from_policy, from_wait):
        assert str(caught.value) == f"timeout {NO_DEADLINE_HINT}{shown}"
