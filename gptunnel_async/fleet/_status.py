"""The fleet's state for an operator, read straight from Redis (``gptunnel-async fleet
status``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._records import FleetStatus
from ._redis_budget import current_rate
from ._redis_store import RedisStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["fleet_status"]


async def fleet_status(
    redis: Redis, *, name: str = "default", budget: str | None = None, prefix: str = "gptunnel"
) -> FleetStatus:
    """What the fleet ``name`` is doing: see [FleetStatus][gptunnel_async.fleet.FleetStatus].

    Args:
        redis: a client of the fleet's Redis.
        name: the fleet's ``RedisStore`` name.
        budget: the ``RedisBudget`` name, for ``rate`` (by default the same as ``name``).
        prefix: the keys' prefix.

    Raises:
        StoreUnavailableError: Redis could not be reached or failed.
    """
    status = await RedisStore(redis, name=name, prefix=prefix).status()
    rate = await current_rate(redis, name=budget or name, prefix=prefix)
    return attrs.evolve(status, rate=rate)
