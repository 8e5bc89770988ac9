"""A fleet of processes sharing one API key: one request budget, and waits that survive
restarts. See [Running a fleet](../fleet.md).

- [RequestBudget][gptunnel_async.fleet.RequestBudget]: what ``GPTunnelClient(budget=...)``
  takes; [InProcessBudget][gptunnel_async.fleet.InProcessBudget] for one process,
  [RedisBudget][gptunnel_async.fleet.RedisBudget] for all processes that share a Redis.
- [Watcher][gptunnel_async.fleet.Watcher]: durable waits, read by any worker and each
  delivered to one handler, on a [RedisStore][gptunnel_async.fleet.RedisStore] (or a
  [MemoryStore][gptunnel_async.fleet.MemoryStore] in one process and in tests).

Redis needs the ``redis`` extra (redis-py only): ``pip install '.[redis]'`` from a clone.
"""

from __future__ import annotations

from .._budget import InProcessBudget, RequestBudget
from ..errors import StoreDataError, StoreUnavailableError
from ._memory import MemoryStore
from ._records import Delivery, FleetProgress, FleetStatus, OutcomeKind, Repaired
from ._redis_budget import RedisBudget
from ._redis_store import RedisStore
from ._status import fleet_status
from ._store import DeadLetterStore, LastReadStore, RenewingStore, RepairingStore, WatchStore
from ._watcher import FAMILIES, RESULT_LIFETIME, Handler, Watcher

__all__ = [
    "FAMILIES",
    "RESULT_LIFETIME",
    "DeadLetterStore",
    "Delivery",
    "FleetProgress",
    "FleetStatus",
    "Handler",
    "InProcessBudget",
    "LastReadStore",
    "MemoryStore",
    "OutcomeKind",
    "RedisBudget",
    "RedisStore",
    "RenewingStore",
    "Repaired",
    "RepairingStore",
    "RequestBudget",
    "StoreDataError",
    "StoreUnavailableError",
    "WatchStore",
    "Watcher",
    "fleet_status",
]
