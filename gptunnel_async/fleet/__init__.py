"""A fleet of processes sharing one API key: one request budget, and waits that survive
restarts.

- [RequestBudget][gptunnel_async.fleet.RequestBudget]: what ``GPTunnelClient(budget=...)``
  takes; [InProcessBudget][gptunnel_async.fleet.InProcessBudget] for one process,
  [RedisBudget][gptunnel_async.fleet.RedisBudget] for all processes that share a Redis.

Redis needs ``pip install 'gptunnel-async[redis]'`` (redis-py only).
"""

from __future__ import annotations

from .._budget import InProcessBudget, RequestBudget
from ..errors import StoreUnavailableError
from ._redis_budget import RedisBudget

__all__ = [
    "InProcessBudget",
    "RedisBudget",
    "RequestBudget",
    "StoreUnavailableError",
]
