"""The request budget: how fast API requests may start, client-wide or fleet-wide.

Every API request of a client — a ``get_result``, each read of every wait, each retry —
takes its start from the client's budget, so 5,000 concurrent waits share one rate
instead of each keeping its own. The decisions are those of
:mod:`gptunnel_async._sansio.rate` (GCRA with an adaptive rate): a 429 slows every
request of the budget down, recovery is gradual, and a ``Retry-After`` holds them all.

:class:`InProcessBudget` keeps the state in the process; ``RedisBudget``
(``gptunnel_async.fleet``) keeps it in Redis so that every process of a fleet shares it.
Pacing keeps real time even when the SDK's pauses are made instant: its point is the
server's clock.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from ._checks import request_rate
from ._sansio import rate

__all__ = ["InProcessBudget", "RequestBudget", "Turns"]


@runtime_checkable
class RequestBudget(Protocol):
    """What a client needs of a budget (``GPTunnelClient(budget=...)``).

    Times are seconds on the budget's own clock (the event loop's in-process, Redis
    ``TIME`` on Redis): the value :meth:`acquire` returns is only ever handed back to
    :meth:`rate_limited`.
    """

    async def acquire(self) -> float:
        """Wait until the next request may start; return when it started."""
        ...

    async def rate_limited(self, started: float, retry_after: float | None) -> None:
        """The request that started at ``started`` got a 429: slow every request down,
        and hold them all for ``retry_after`` seconds if the server asked."""
        ...

    async def current_rate(self) -> float:
        """The requests per second allowed now: the configured rate, or less after 429s."""
        ...


class Turns:
    """A budget's turn: an ``asyncio.Lock`` of the running event loop. A lock belongs to
    the loop it first made a waiter in, so a client used again under another
    ``asyncio.run`` (a command line, a notebook, a test suite) gets a new one there,
    rather than a ``RuntimeError`` for each request queued behind another."""

    __slots__ = ("_lock", "_loop")

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def of_running_loop(self) -> asyncio.Lock:
        """The lock of the running loop."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock


class InProcessBudget:
    """A request budget shared by everything in one process that holds it.

    Requests start at least ``1 / rate`` apart (any one second holds at most
    ``requests_per_second + 1`` starts), in the order they asked; see
    :mod:`gptunnel_async._sansio.rate` for how 429s slow it down and how it recovers.

    Args:
        requests_per_second: the ceiling, a finite number of requests per second, at least
            1/3600 (one an hour).

    Raises:
        ConfigurationError: the rate is not a finite number of at least 1/3600.
    """

    def __init__(self, requests_per_second: float) -> None:
        self.requests_per_second = request_rate("requests_per_second", requests_per_second)
        self._state = rate.RateState(self.requests_per_second)
        self._turns = Turns()
        """Requests ask in turn (asyncio's lock is first come, first served): one timer
        at a time, and no waiter overtaken for ever by luckier ones."""

    def __repr__(self) -> str:
        return f"InProcessBudget(requests_per_second={self.requests_per_second:g})"

    async def acquire(self) -> float:
        """Wait until the next request may start; return when it did (event-loop seconds)."""
        loop = asyncio.get_running_loop()
        async with self._turns.of_running_loop():
            while True:
                now = loop.time()
                decision = rate.start(self._state, now)
                if not decision.delay:
                    self._state = decision.state
                    return now
                await asyncio.sleep(decision.delay)

    async def rate_limited(self, started: float, retry_after: float | None) -> None:
        """The request that started at ``started`` got a 429: slow every request down,
        and hold them all for ``retry_after`` seconds if the server asked."""
        now = asyncio.get_running_loop().time()
        self._state = rate.rate_limited(self._state, started, now, retry_after)

    async def current_rate(self) -> float:
        """The requests per second allowed now: the configured rate, or less after 429s."""
        return rate.current_rate(self._state, asyncio.get_running_loop().time())
