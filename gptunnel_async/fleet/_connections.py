"""How many of a Redis client's connections the store's commands take at once.

redis-py's ``ConnectionPool`` does not wait for a free connection: once
``max_connections`` are in use (100 unless set, in redis-py 8.1), the next command
fails at once with ``MaxConnectionsError`` ("Too many connections"). A web service that
awaited 300 results at the same instant saw 200 of them fail so. The store's commands
instead wait their turn for a share of the pool: half of it, so that the application's
own commands keep the other half, and so do the two connections a worker holds outside
the share (its blocking read of the finished stream, for up to half a second at a time,
and its pub/sub listener, for as long as it listens). A ``BlockingConnectionPool`` waits
by itself, and a pool without a usable limit needs no share: both are left alone.

The share is one ``asyncio.Semaphore`` per pool (a ``RedisCluster``: per client, whose
``max_connections`` is each node's, and a fleet's keys all live on one node), shared by
every store on that pool, and a command nested in another of the same task (a take
reading its entries) runs in its caller's share rather than waiting for a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any, Final

__all__ = ["STORE_SHARE", "CommandShare", "share_of"]

STORE_SHARE: Final = 0.5
"""The fraction of a pool's ``max_connections`` the store's commands use at most."""

_holder: ContextVar[asyncio.Task[Any] | None] = ContextVar("_holder", default=None)
"""The task that holds a share in this context: its nested commands take no other."""


class CommandShare:
    """At most ``limit`` of the store's commands in flight at once; the rest wait their
    turn, first come first served (``limit`` ``None``: no bound)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold one slot of the share while the block runs (at once if unbounded, or if
        this task holds one already)."""
        task = asyncio.current_task()
        if self.limit is None or task is None or _holder.get() is task:
            yield
            return
        async with self._slots_of(asyncio.get_running_loop(), self.limit):
            token = _holder.set(task)
            try:
                yield
            finally:
                _holder.reset(token)

    def _slots_of(self, loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.Semaphore:
        """The semaphore of ``loop``: a client used again under another ``asyncio.run``
        gets new ones (an asyncio semaphore belongs to the loop it first waited in)."""
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(limit), loop
        return self._slots


_shares: weakref.WeakKeyDictionary[Any, CommandShare] = weakref.WeakKeyDictionary()
"""The share of each pool (or cluster client), for as long as the pool lives."""


def share_of(redis: Any) -> CommandShare:
    """The share of ``redis``'s connections that stores on it use (the same object for
    every store on one pool)."""
    owner = getattr(redis, "connection_pool", None) or redis
    try:
        return _shares[owner]
    except KeyError:
        pass
    except TypeError:  # an object weakref cannot point to: a share of its own
        return CommandShare(_limit(redis))
    share = _shares[owner] = CommandShare(_limit(redis))
    return share


def _limit(redis: Any) -> int | None:
    """Half of the pool's ``max_connections`` (at least one); ``None`` for a pool that
    waits for a connection by itself, or that has no usable limit."""
    pool = getattr(redis, "connection_pool", None)
    if pool is not None:
        if _waits_by_itself(pool):
            return None
        ceiling = getattr(pool, "max_connections", None)
    else:  # RedisCluster: each node's pool has the client's max_connections
        kwargs = getattr(redis, "connection_kwargs", None)
        ceiling = kwargs.get("max_connections") if isinstance(kwargs, dict) else None
    if not isinstance(ceiling, int) or isinstance(ceiling, bool) or ceiling < 1:
        return None
    return max(1, int(ceiling * STORE_SHARE))


def _waits_by_itself(pool: Any) -> bool:
    try:
        from redis.asyncio import BlockingConnectionPool
    except ImportError:  # a client alike without redis-py: no pool of redis-py's
        return False
    return isinstance(pool, BlockingConnectionPool)
