"""The client-wide request budget on a loopback server: connections, rate, 429 slow-down."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from gptunnel_async import ConfigurationError, GPTunnelClient, WaitTimeoutError
from gptunnel_async.fleet import InProcessBudget

from .conftest import API_KEY, ScriptedAPI, task_json


class Arrivals:
    """A reply for :class:`ScriptedAPI` that records when each request arrived.

    Each task is ``running`` on its first read and ``done`` on its second; requests whose
    number is in ``refuse`` get the given 429 instead.
    """

    def __init__(self, refuse: dict[int, dict[str, str]] | None = None, delay: float = 0.0):
        self.times: list[float] = []
        self.reads: Counter[str] = Counter()
        self.refused_at: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._refuse = refuse or {}
        self._delay = delay

    async def __call__(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        self.times.append(now)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
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


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of ``times`` in any half-open window of ``seconds``."""
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered[i:] if t < start + seconds) for i, start in enumerate(ordered)
    )


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


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
        budget = client._transport.budget
        assert budget is not None
        starts: list[float] = []
        acquire = budget.acquire

        async def recording_acquire() -> float:
            starts.append(await acquire())
            return starts[-1]

        budget.acquire = recording_acquire  # type: ignore[method-assign]
        waits = [client.wait_for_result(f"task-{i}") for i in range(50)]
        reads = [client.get_result(f"read-{i}") for i in range(20)]
        await asyncio.gather(*waits, *reads)
    assert len(arrivals.times) == len(starts) == 120
    assert most_in_any_window(starts, 1.0) <= rate + 1
    # On the server's side, a slot of slack for loopback jitter: a burst would show far more.
    assert most_in_any_window(arrivals.times, 1.0 - 1 / rate) <= rate + 1
    assert max(arrivals.times) - min(arrivals.times) >= (120 - 1) / rate * 0.95


async def test_max_connections_bounds_requests_in_flight(api: ScriptedAPI) -> None:
    arrivals = Arrivals(delay=0.02)
    api.script(arrivals)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_connections=3) as client:
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(30)))
        session = client._session
        assert session is not None
        assert session.connector is not None
        assert session.connector.limit == 3
    assert arrivals.most_in_flight == 3


async def test_a_wait_queued_behind_the_budget_still_keeps_its_deadline(api: ScriptedAPI) -> None:
    arrivals = Arrivals(delay=5.0)
    api.script(arrivals)
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, max_connections=1, timeout=10
    ) as client:
        hog = asyncio.create_task(client.get_result("hog"))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_result("queued", timeout=0.2)
        assert loop.time() - started < 1.0
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
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(24)))
        budget = client._transport.budget
        assert budget is not None
        assert await budget.current_rate() == pytest.approx(rate / 2, rel=0.2)
    times = sorted(arrivals.times)
    (refused,) = arrivals.refused_at
    before = gaps([t for t in times if t <= refused])
    after = gaps([t for t in times if t > refused][:10])
    assert statistics.median(after) >= 1.7 * statistics.median(before)


async def test_retry_after_holds_every_request_of_the_client(
    api: ScriptedAPI, instant: None
) -> None:
    arrivals = Arrivals(refuse={5: {"Retry-After": "0.4"}})
    api.script(arrivals)
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, requests_per_second=50
    ) as client:
        await asyncio.gather(*(client.get_result(f"t-{i}") for i in range(12)))
    (refused,) = arrivals.refused_at
    held = [t for t in arrivals.times if refused + 0.01 < t < refused + 0.4]
    assert held == []
    assert len(arrivals.times) == 13


async def test_without_a_rate_a_429_is_only_that_request_s_business(
    api: ScriptedAPI, instant: None
) -> None:
    arrivals = Arrivals(refuse={1: {"Retry-After": "30"}})
    api.script(arrivals)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url) as client:
        await client.get_result("t")
        assert client._transport.budget is None
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.get_result("u")
        assert loop.time() - started < 1.0


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


async def test_a_client_given_a_budget_paces_by_it(api: ScriptedAPI, instant: None) -> None:
    arrivals = Arrivals()
    api.script(arrivals)
    budget = InProcessBudget(25)
    async with (
        GPTunnelClient(api_key=API_KEY, base_url=api.base_url, budget=budget) as one,
        GPTunnelClient(api_key=API_KEY, base_url=api.base_url, budget=budget) as other,
    ):
        assert one._transport.budget is budget
        await asyncio.gather(*(c.get_result(f"t-{i}") for i in range(15) for c in (one, other)))
    assert len(arrivals.times) == 30
    assert most_in_any_window(arrivals.times, 1.0 - 1 / 25) <= 25 + 1
