"""The client-wide request budget on a loopback server: connections, rate, 429 slow-down."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from gptunnel_async import ConfigurationError, GPTunnelClient, WaitTimeoutError
from gptunnel_async._budget import RequestBudget
from gptunnel_async._sansio.rate import PROBE_PER_SECOND, SAFE_FRACTION, SLACK
from gptunnel_async.fleet import InProcessBudget

from . import faults
from .conftest import API_KEY, HANG_GUARD, ScriptedAPI, task_json


class Arrivals:
    """A reply for :class:`ScriptedAPI` that records when each request arrived.

    Each task is ``running`` on its first read and ``done`` on its second; requests whose
    number is in ``refuse`` get the given 429 instead. Each answer waits ``delay``
    seconds, and none goes until ``hold_until_in_flight`` requests have been in flight
    at once.
    """

    def __init__(
        self,
        refuse: dict[int, dict[str, str]] | None = None,
        delay: float = 0.0,
        *,
        hold_until_in_flight: int = 0,
    ) -> None:
        self.times: list[float] = []
        self.reads: Counter[str] = Counter()
        self.refused_at: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._refuse = refuse or {}
        self._delay = delay
        self._hold_until = hold_until_in_flight
        self._crowded = asyncio.Event()
        self.arrived = asyncio.Event()

    async def __call__(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        self.times.append(now)
        self.arrived.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self._hold_until:
            self._crowded.set()
        try:
            # Held until that many are in flight at once (a hang guard only bounds it).
            await asyncio.wait_for(self._crowded.wait(), HANG_GUARD)
            await asyncio.sleep(self._delay)
            if len(self.times) in self._refuse:
                self.refused_at.append(now)
                headers = self._refuse[len(self.times)]
                return web.json_response(
                    {"error": {"message": "slow down"}}, status=429, headers=headers
                )
            task_id = request.query["taskId"]
            self.reads[task_id] += 1
            status = "done" if self.reads[task_id] >= 2 else "running"
            return web.json_response(task_json(status=status, percent=100, id=task_id))
        finally:
            self.in_flight -= 1


class RecordingBudget:
    """A request budget that records what passes through the one it wraps, on that
    budget's own clock: each start it grants, each 429 reported to it, and the rate it
    allows right after each report.

    Assertions on these hold whatever the machine's load: they are the budget's own
    decisions, not the times requests happened to reach the server.
    """

    def __init__(self, inner: RequestBudget) -> None:
        self.inner = inner
        self.starts: list[float] = []
        self.reported: list[tuple[float, float | None]] = []
        self.started_before_report: list[int] = []
        self.rates_after_report: list[float] = []

    async def acquire(self) -> float:
        started = await self.inner.acquire()
        self.starts.append(started)
        return started

    async def rate_limited(self, started: float, retry_after: float | None) -> None:
        await self.inner.rate_limited(started, retry_after)
        self.reported.append((started, retry_after))
        self.started_before_report.append(len(self.starts))
        self.rates_after_report.append(await self.inner.current_rate())

    async def current_rate(self) -> float:
        return await self.inner.current_rate()

    def starts_from(self, started: float) -> list[float]:
        """The starts granted at ``started`` or later, in order."""
        return sorted(t for t in self.starts if t >= started)


def record(client: GPTunnelClient) -> RecordingBudget:
    """Put a :class:`RecordingBudget` around ``client``'s budget, before any request."""
    budget = client._transport.budget
    assert budget is not None
    recording = RecordingBudget(budget)
    client._transport.budget = recording
    return recording


def sent_after_their_start(starts: list[float], arrivals: list[float]) -> bool:
    """Whether the n-th request to reach the server did so no sooner than the n-th start
    the budget granted (the server runs on the test's own event loop, so one clock): no
    request went out without its start."""
    return len(starts) == len(arrivals) and all(
        start <= arrival for start, arrival in zip(sorted(starts), sorted(arrivals), strict=True)
    )


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of ``times`` in any half-open window of ``seconds``."""
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered[i:] if t < start + seconds) for i, start in enumerate(ordered)
    )


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def assert_held_after_the_429(budget: RecordingBudget, retry_after: float) -> None:
    """The one 429 was reported with its ``Retry-After``, and the budget then granted
    no start for that long: among the starts from the refused one on, two in a row lie
    at least ``retry_after`` apart (the requests started between the refused one and
    the report may go; none after the report)."""
    ((refused, asked),) = budget.reported
    assert asked == pytest.approx(retry_after)
    # less a microsecond: Redis TIME is ~1.7e9 s, where a float step is ~2e-7 s
    assert max(gaps(budget.starts_from(refused))) >= retry_after - 1e-6


def assert_slowed_after_the_429(budget: RecordingBudget, ceiling: float) -> None:
    """The starts an in-process budget granted after the one 429 was reported came no
    faster than the rate a 429 leaves: the safe fraction of the ceiling, plus what the
    probe adds over a few seconds. Unslowed, they would be ``1 / ceiling`` apart.

    In-process, the budget decides as it is called, so the order of the record is the
    order of its decisions.
    """
    (before,) = budget.started_before_report
    last_before, after = budget.starts[before - 1], budget.starts[before:]
    fastest = ceiling * (SAFE_FRACTION + 10 * PROBE_PER_SECOND)
    early = SLACK / ceiling  # the most the last start before may have counted early
    assert len(after) >= 10
    assert after[-1] - last_before >= len(after) / fastest - early


# -- rate ---------------------------------------------------------------------------------


async def test_many_waits_and_reads_never_exceed_requests_per_second(
    api: ScriptedAPI, instant: None
) -> None:
    arrivals = Arrivals()
    api.script(arrivals)
    rate = 50
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, requests_per_second=rate
    ) as client:
        budget = record(client)
        waits = [client.wait_for_result(f"task-{i}") for i in range(50)]
        reads = [client.get_result(f"read-{i}") for i in range(20)]
        await asyncio.gather(*waits, *reads)
    starts = budget.starts
    assert len(starts) == 120
    assert most_in_any_window(starts, 1.0) <= rate + 1
    assert max(starts) - min(starts) >= (120 - 1) / rate * (1 - SLACK)
    assert sent_after_their_start(starts, arrivals.times)


async def test_max_connections_bounds_requests_in_flight(api: ScriptedAPI) -> None:
    arrivals = Arrivals(hold_until_in_flight=3)
    api.script(arrivals)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_connections=3) as client:
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(30)))
        session = client._session
        assert session is not None
        assert session.connector is not None
        assert session.connector.limit == 3
    assert arrivals.most_in_flight == 3


async def test_a_wait_queued_behind_the_budget_still_keeps_its_deadline(api: ScriptedAPI) -> None:
    arrivals = Arrivals(delay=3600.0)  # the one connection stays taken until the end
    api.script(arrivals)
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, max_connections=1, timeout=3600
    ) as client:
        hog = asyncio.create_task(client.get_result("hog"))
        await arrivals.arrived.wait()  # the hog holds the connection
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(WaitTimeoutError):
                await client.wait_for_result("queued", timeout=0.2)
        assert not hog.done()  # the wait gave up while still queued behind it
        hog.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hog
    assert len(arrivals.times) == 1


# -- 429s slow the whole client down ----------------------------------------------------


async def test_a_429_halves_the_rate_of_every_request_of_the_client(
    api: ScriptedAPI, instant: None
) -> None:
    arrivals = Arrivals(refuse={8: {}})
    api.script(arrivals)
    rate = 40
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, requests_per_second=rate
    ) as client:
        budget = record(client)
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(24)))
    ((refused, _),) = budget.reported
    assert refused in budget.starts  # the 429 is charged to the request that got it
    (slowed,) = budget.rates_after_report
    assert slowed == pytest.approx(rate / 2, rel=0.05)
    assert_slowed_after_the_429(budget, rate)


async def test_retry_after_holds_every_request_of_the_client(
    api: ScriptedAPI, instant: None
) -> None:
    arrivals = Arrivals(refuse={5: {"Retry-After": "1"}})
    api.script(arrivals)
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, requests_per_second=50
    ) as client:
        budget = record(client)
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(12)))
    assert len(arrivals.times) == 13
    assert_held_after_the_429(budget, 1.0)


async def test_without_a_rate_a_429_is_only_that_request_s_business(
    api: ScriptedAPI, instant: None
) -> None:
    arrivals = Arrivals(refuse={1: {"Retry-After": "60"}})
    api.script(arrivals)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url) as client:
        await client.get_result("t")
        assert client._transport.budget is None
        async with asyncio.timeout(HANG_GUARD):  # held for the 60 s asked, it would not end
            await client.get_result("u")


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_connections": 2.5},
        {"max_connections": True},
        {"requests_per_second": 0},
        {"requests_per_second": -1},
        {"requests_per_second": float("inf")},
        {"requests_per_second": "10"},
        {"requests_per_second": 5e-324},  # halved by a 429: 0, and its interval infinite
        {"requests_per_second": 1 / 3601},
    ],
)
def test_nonsense_budgets_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        GPTunnelClient(api_key=API_KEY, **options)


def test_a_budget_and_a_rate_together_raise_value_error() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        GPTunnelClient(api_key=API_KEY, requests_per_second=5, budget=InProcessBudget(5))


def test_a_budget_must_be_a_request_budget() -> None:
    with pytest.raises(ConfigurationError, match="RequestBudget"):
        GPTunnelClient(api_key=API_KEY, budget=5)  # type: ignore[arg-type]


class _HandedOn:
    """A budget that hands every method on from the one it wraps (``__getattr__``)."""

    def __init__(self, inner: RequestBudget) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_budget_that_hands_its_methods_on_is_taken_on_every_python(
    api: ScriptedAPI,
) -> None:
    """It was taken on Python 3.11 and refused on 3.12 and 3.13, whose runtime
    protocol check ignores what ``__getattr__`` provides."""
    api.script(faults.answer(200, {"code": 0, "balance": 1.0, "orgId": "o"}))
    handed_on = _HandedOn(InProcessBudget(50))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, budget=handed_on) as client:  # type: ignore[arg-type]
        assert (await client.balance()).balance == 1.0


async def test_a_client_given_a_budget_paces_by_it(api: ScriptedAPI, instant: None) -> None:
    arrivals = Arrivals()
    api.script(arrivals)
    shared = InProcessBudget(25)
    budget = RecordingBudget(shared)
    async with (
        GPTunnelClient(api_key=API_KEY, base_url=api.base_url, budget=budget) as one,
        GPTunnelClient(api_key=API_KEY, base_url=api.base_url, budget=budget) as other,
    ):
        assert one._transport.budget is budget
        await asyncio.gather(*(c.get_result(f"t-{i}") for i in range(15) for c in (one, other)))
    assert len(budget.starts) == 30
    assert most_in_any_window(budget.starts, 1.0) <= 25 + 1
    assert max(budget.starts) - min(budget.starts) >= (30 - 1) / 25 * (1 - SLACK)
    assert sent_after_their_start(budget.starts, arrivals.times)
