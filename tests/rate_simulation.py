"""A discrete-event simulation of clients pacing themselves with the pure rate algorithm
against a rate-limited server: deterministic, no sockets, no clock."""

from __future__ import annotations

import collections
import heapq
import random
from dataclasses import dataclass, field
from typing import Literal

from gptunnel_async._sansio import rate

Limiter = Literal["sliding_window", "token_bucket"]


@dataclass
class Server:
    """Allows ``limit`` requests a second: a sliding window of the accepted ones, or a
    token bucket holding ``limit`` tokens. Refusals are 429s with ``Retry-After: 0``."""

    limit: int
    limiter: Limiter
    accepted: collections.deque[float] = field(default_factory=collections.deque)
    tokens: float = 0.0
    refilled_at: float = 0.0
    log: list[tuple[float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = float(self.limit)

    def answer(self, now: float) -> bool:
        if self.limiter == "sliding_window":
            while self.accepted and self.accepted[0] <= now - 1.0:
                self.accepted.popleft()
            ok = len(self.accepted) < self.limit
            if ok:
                self.accepted.append(now)
        else:
            self.tokens = min(self.limit, self.tokens + (now - self.refilled_at) * self.limit)
            self.refilled_at = now
            ok = self.tokens >= 1
            if ok:
                self.tokens -= 1
        self.log.append((now, ok))
        return ok


def simulate(
    server: Server,
    ceiling: float,
    *,
    loops: int = 8,
    seconds: float = 10.0,
    latency: float = 0.002,
    jitter: float = 0.001,
    seed: int = 0,
) -> Server:
    """``loops`` read loops, each sending its next request as soon as the last answer
    came, all paced by one budget of ``ceiling`` requests/s (asking in turn, as the
    budgets do); returns the server with its log of ``(arrival, accepted)``."""
    rng = random.Random(seed)
    state = rate.RateState(ceiling)
    events: list[tuple[float, int, str, tuple[int, float]]] = []
    order = 0
    waiting: collections.deque[int] = collections.deque()
    pacing = False

    def push(at: float, kind: str, data: tuple[int, float] = (0, 0.0)) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, data))

    def grant(now: float) -> None:
        nonlocal state, pacing
        while waiting and not pacing:
            decision = rate.start(state, now)
            if decision.delay:
                pacing = True
                push(now + decision.delay + rng.uniform(0, jitter), "paced")
                return
            state = decision.state
            push(now + latency + rng.uniform(0, jitter), "arrive", (waiting.popleft(), now))

    for loop in range(loops):
        push(0.0, "want", (loop, 0.0))
    while events:
        now, _, kind, (loop, sent) = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "want":
            waiting.append(loop)
        elif kind == "paced":
            pacing = False
        else:
            ok = server.answer(now)
            if not ok:
                state = rate.rate_limited(state, sent, now + latency, 0.0)
            push(now + latency, "want", (loop, 0.0))
        grant(now)
    return server
