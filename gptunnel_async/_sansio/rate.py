"""The request budget's algorithm: GCRA with an adaptive rate, pure.

GCRA (the generic cell rate algorithm) keeps a token bucket as one number, the
*theoretical arrival time* (TAT) of the next request: a request may start once the
clock reaches it, and starting moves it one interval (``1 / rate``) further. Here the
interval is that of the *current* rate, which 429s lower and time restores, so the
state keeps the last start and the TAT is ``last_start + 1 / rate(now)``: a rate that
recovers shortens the wait at once instead of after a slot booked at the old rate.

The rate adapts as TCP's congestion window does, with one round per episode:

- a 429 for a request sent after the last slow-down halves the current rate (never
  below :data:`MIN_FRACTION` of the ceiling); 429s for requests sent before it describe
  the old rate and change nothing, so fifty 429s arriving together halve it once;
- afterwards the rate climbs back quickly towards :data:`SAFE_FRACTION` of the rate that
  drew the 429 (the limit lies below that), then probes upwards slowly, by
  :data:`PROBE_PER_SECOND` of the ceiling each second, up to the ceiling;
- a ``Retry-After`` holds every request until it has passed.

Every function takes the time (seconds on one clock: the event loop's in-process, Redis
``TIME`` on Redis) and returns a new state; nothing here sleeps or reads a clock. The Lua
script of the Redis budget is this module written out for Redis, and the tests check that
both decide alike.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from .retries import RETRY_AFTER_CAP

__all__ = [
    "EPISODE_SECONDS",
    "MIN_FRACTION",
    "PROBE_PER_SECOND",
    "RECOVERY_SECONDS",
    "SAFE_FRACTION",
    "SLACK",
    "SLOWDOWN_FACTOR",
    "RateState",
    "Start",
    "current_rate",
    "longest_pause",
    "rate_limited",
    "start",
]

SLOWDOWN_FACTOR: Final = 0.5
"""A counted 429 multiplies the current rate by this."""

SAFE_FRACTION: Final = 0.8
"""After a 429 the rate climbs back quickly to this fraction of the rate that drew it."""

RECOVERY_SECONDS: Final = 3.0
"""The quick climb closes ``1 - 1/e`` (63 %) of its gap every this many seconds."""

PROBE_PER_SECOND: Final = 0.004
"""Beyond the quick climb, each second adds this fraction of the ceiling to the rate."""

EPISODE_SECONDS: Final = 1.0
"""429s this close to the last slow-down belong to it: the climb aims below the rate
that started the episode (a server's one-second window refuses a little longer than
the overshoot lasted)."""

MIN_FRACTION: Final = 1 / 64
"""The rate never drops below this fraction of the ceiling."""

SLACK: Final = 0.5
"""A start that comes at most this many intervals after its TAT (the caller slept a
little late) counts from the TAT, so sleeping late does not lose rate; any window of one
second still holds at most ``floor(ceiling + 1 + SLACK)`` starts: ``ceiling + 1`` for a
whole-number ceiling. Later than that, the budget was idle
and the start counts from when it came."""


@attrs.frozen
class RateState:
    """Everything the budget remembers, in seconds on the budget's clock.

    Attributes:
        ceiling: the configured rate, requests per second (> 0).
        last_start: when the last request was counted as started (``-inf``: never).
        level: the rate right after the last slow-down (the ceiling before any).
        peak: the rate that drew the last counted 429 (``inf`` before any).
        changed_at: when the rate was last slowed down (``-inf``: never).
        resume_at: no request starts before this (a ``Retry-After``), ``-inf`` if none.
    """

    ceiling: float
    last_start: float = -math.inf
    level: float = attrs.field()
    peak: float = math.inf
    changed_at: float = -math.inf
    resume_at: float = -math.inf

    @level.default
    def _level_default(self) -> float:
        return self.ceiling


@attrs.frozen
class Start:
    """What :func:`start` decided: ``delay`` seconds to wait before asking again (``0``:
    the request starts now, and ``state`` counts it)."""

    delay: float
    state: RateState


def current_rate(state: RateState, now: float) -> float:
    """Requests per second the budget allows at ``now``."""
    ceiling = state.ceiling
    elapsed = now - state.changed_at
    if elapsed == math.inf:
        return ceiling
    target = min(ceiling, state.peak * SAFE_FRACTION)
    climbed = target - (target - state.level) * math.exp(-elapsed / RECOVERY_SECONDS)
    if state.level > target:  # slowed down from above the safe rate: no quick climb
        climbed = state.level
    return min(ceiling, climbed + ceiling * PROBE_PER_SECOND * elapsed)


def longest_pause(ceiling: float) -> float:
    """The longest pause a budget of ``ceiling`` requests per second ever asks for, in
    seconds: one interval at its slowest rate (:data:`MIN_FRACTION` of the ceiling), or a
    ``Retry-After`` as the SDK honours it (at most ``RETRY_AFTER_CAP``, 60 s), whichever
    is longer. A budget kept outside the process (Redis) caps each pause at this, so an
    odd value in its state never holds requests longer."""
    return max(RETRY_AFTER_CAP, 1.0 / (ceiling * MIN_FRACTION))


def start(state: RateState, now: float) -> Start:
    """May a request start at ``now``? Either it does (``delay == 0``, the new state
    counts it) or the caller waits ``delay`` seconds and asks again."""
    interval = 1.0 / current_rate(state, now)
    arrival = max(state.last_start + interval, state.resume_at)
    if now < arrival:
        return Start(arrival - now, state)
    counted = arrival if now - arrival <= SLACK * interval else now  # late, or idle
    return Start(0.0, attrs.evolve(state, last_start=counted))


def rate_limited(
    state: RateState, sent_at: float, now: float, retry_after: float | None = None
) -> RateState:
    """The request that started at ``sent_at`` got a 429 at ``now``: slow down once per
    round, and hold every request ``retry_after`` seconds if the server asked for it."""
    if retry_after is not None and retry_after > 0:
        state = attrs.evolve(state, resume_at=max(state.resume_at, now + retry_after))
    if sent_at < state.changed_at:
        return state
    rate = current_rate(state, now)
    floor = state.ceiling * MIN_FRACTION
    # 429s a second apart or less are one episode (a limiter's window still full): the
    # rate that started it, not the halved one, is what the climb aims below.
    peak = max(rate, state.peak) if now - state.changed_at < EPISODE_SECONDS else rate
    return attrs.evolve(state, level=max(floor, rate * SLOWDOWN_FACTOR), peak=peak, changed_at=now)
