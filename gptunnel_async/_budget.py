"""The client-wide request budget: how fast API requests may start.

Every API request of one client — a ``get_result``, each read of every wait, each retry —
takes its start from the same budget, so 5,000 concurrent waits share one rate instead of
each keeping its own. A 429 slows the whole client down: the rate halves (once per round
of requests, not once per 429 in flight) and climbs back by a twentieth of the configured
rate each second, and a ``Retry-After`` holds every request until it has passed.

Pacing keeps real time even when the SDK's pauses are made instant: its point is the
server's clock.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Final

from ._checks import positive_number
from .errors import ConfigurationError

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

__all__ = ["AdaptiveRate", "RequestBudget"]

SLOWDOWN_FACTOR: Final = 0.5
"""A 429 multiplies the current rate by this."""

RECOVERY_PER_SECOND: Final = 0.05
"""Each second without a 429 gives back this fraction of the configured rate."""

MIN_FRACTION: Final = 1 / 64
"""The rate never drops below this fraction of the configured one."""


class AdaptiveRate:
    """The rate a client may currently use: ``ceiling`` lowered by 429s, then recovering.

    Multiplicative decrease, additive increase (as TCP does): a 429 multiplies the rate
    by :data:`SLOWDOWN_FACTOR`; afterwards it climbs by :data:`RECOVERY_PER_SECOND` of
    the ceiling per second. Times are event-loop seconds, passed in, so this is pure.
    """

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self._floor = ceiling * MIN_FRACTION
        self._rate_at_change = ceiling
        self._changed_at = -math.inf

    def current(self, now: float) -> float:
        """Requests per second allowed at ``now``."""
        regained = self.ceiling * RECOVERY_PER_SECOND * (now - self._changed_at)
        return min(self.ceiling, self._rate_at_change + regained)

    def rate_limited(self, sent_at: float, now: float) -> None:
        """A request sent at ``sent_at`` got a 429 at ``now``: slow down.

        A 429 for a request sent before the last slow-down reflects the old rate and is
        not counted again, so fifty 429s arriving together halve the rate once.
        """
        if sent_at < self._changed_at:
            return
        self._rate_at_change = max(self._floor, self.current(now) * SLOWDOWN_FACTOR)
        self._changed_at = now


def _new_limiter(requests_per_second: float) -> AsyncLimiter:
    """A leaky bucket holding one request: requests start at least 1/rate apart, so no
    one-second window ever holds more than the rate (a fuller bucket would allow bursts)."""
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        raise ConfigurationError(
            "requests_per_second needs aiolimiter: pip install 'gptunnel-async[ratelimit]'"
        ) from None
    return AsyncLimiter(1, 1 / requests_per_second)


class RequestBudget:
    """A client-wide rate for API requests, lowered by 429s and recovering.

    Args:
        requests_per_second: requests start at least ``1 / rate`` apart (see the module's
            docstring for how 429s slow the client down). Needs aiolimiter.

    Raises:
        ConfigurationError: the rate is not a number > 0, or aiolimiter is not installed.
    """

    def __init__(self, requests_per_second: float) -> None:
        self.requests_per_second = positive_number("requests_per_second", requests_per_second)
        self._limiter = _new_limiter(self.requests_per_second)
        self._rate = AdaptiveRate(self.requests_per_second)
        self._resume_at = 0.0

    def __repr__(self) -> str:
        return f"RequestBudget(requests_per_second={self.requests_per_second:g})"

    def current_rate(self) -> float:
        """The requests per second allowed now: the configured rate, or less after 429s."""
        return self._rate.current(asyncio.get_running_loop().time())

    async def pace(self) -> float:
        """Wait until the next request may start; return that time (event-loop seconds)."""
        loop = asyncio.get_running_loop()
        while True:
            hold = self._resume_at - loop.time()
            if hold > 0:
                await asyncio.sleep(hold)
                continue
            await self._limiter.acquire()
            # Below the ceiling, each start uses up more than one request's worth of the
            # bucket: the surplus, taken in pieces the bucket can hold, spaces starts out.
            surplus = self._rate.ceiling / self._rate.current(loop.time()) - 1
            while surplus > 1e-9:
                await self._limiter.acquire(min(1.0, surplus))
                surplus -= 1.0
            if self._resume_at <= loop.time():  # no Retry-After arrived while waiting
                return loop.time()

    def rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """The request that started at ``sent_at`` got a 429: slow the whole client down,
        and hold every request for ``retry_after`` seconds if the server asked."""
        now = asyncio.get_running_loop().time()
        self._rate.rate_limited(sent_at, now)
        if retry_after:
            self._resume_at = max(self._resume_at, now + retry_after)
