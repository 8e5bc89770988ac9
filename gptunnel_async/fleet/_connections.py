"""How the fleet's Redis commands share a client's connections with everything else.

redis-py's ``ConnectionPool`` does not wait for a free connection: once
``max_connections`` are in use (100 unless set, in redis-py 8.1), the next command
fails at once with ``MaxConnectionsError`` ("Too many connections"). A web service that
awaited 300 results at the same instant saw 200 of them fail so; a
``BlockingConnectionPool`` waits, but lets a task that just gave a connection back take
it again at once, so a loop of blocking reads starved everything else. The fleet's use
of a pool of ``M`` connections is bounded in three kinds of slots instead, each taken in
turn, first come first served, and shared by every store and budget on the pool;
``M // 4`` of each kind (at least one):

- **short commands** (the stores' and the budgets');
- **blocking reads** of the finished stream (each holds a connection for up to half a
  second), apart, so that short commands never queue behind them. A command a blocking
  read's task makes meanwhile (reading the entries it got) runs in its slot. A worker
  that finds every one taken (more idle watchers on the pool than slots) reads the
  stream without blocking, as a short command, and looks again half a second later;
- **listeners** (a watcher's pub/sub subscription, held for as long as its ``result()``
  calls or ``progress()`` wait). A watcher whose listener waits for a slot still gets
  its results, by reading the store every second; its ``progress()`` gets no event
  until a slot is free, which the store logs as a warning, once a pool.

That leaves the application a quarter of the pool. A command the pool still refuses
(the application filled it) is made again, with a short random backoff, for up to
:data:`POOL_WAIT` seconds, as a ``BlockingConnectionPool`` would wait: redis-py refuses
it before sending anything, so any command may be made again. A pool needs at least
:data:`MIN_POOL` connections; one without a usable limit gets no slots. The slots are
``asyncio.Semaphore``s kept per pool (a ``RedisCluster``: per client, whose
``max_connections`` is each node's, and a fleet's keys all live on one node).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, TypeVar

import attrs

from ._errors import is_connection_lost, is_pool_full, store_call

__all__ = [
    "MIN_POOL",
    "POOL_WAIT",
    "PoolShare",
    "Slots",
    "command",
    "one_command",
    "patiently",
    "pool_size",
    "share_of",
]

T = TypeVar("T")

MIN_POOL: Final = 3
"""The fewest connections a pool needs for the fleet: a listener, a blocking read and a
short command at once."""

POOL_WAIT: Final = 10.0
"""Seconds a command waits at most for a connection of a pool that is full (the
application, the listeners or another process of the pool's holding them all), as
redis-py's ``BlockingConnectionPool`` waits for one (20 s by default there); then the
pool's error."""

_holder: ContextVar[asyncio.Task[Any] | None] = ContextVar("_holder", default=None)
"""The task that holds a slot in this context: the commands it makes meanwhile run in
it (one task makes one command at a time, on one connection)."""


class Slots:
    """At most ``limit`` holders at once; the rest wait their turn, first come first
    served (``limit`` ``None``: no bound)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.warned = False
        """Whether the wait for one was logged (once a pool: see ``RedisStore.events``)."""
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def free(self) -> bool:
        """Whether a slot may be had at once (no other waits for one either)."""
        if self.limit is None:
            return True
        return not self._slots_of(asyncio.get_running_loop(), self.limit).locked()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot while the block runs (at once if unbounded): for a listener,
        which makes no command meanwhile, in an async generator (closed, maybe, in
        another task, where no context variable of its own could be reset)."""
        if self.limit is None:
            yield
            return
        async with self._slots_of(asyncio.get_running_loop(), self.limit):
            yield

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold one slot while the block runs, the commands this task makes meanwhile
        in it (at once if this task holds one already, of these slots or others)."""
        task = asyncio.current_task()
        if self.limit is None or task is None or _holder.get() is task:
            yield
            return
        async with self.slot():
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


@attrs.frozen
class PoolShare:
    """The fleet's slots on one pool: for short commands, blocking reads, listeners."""

    commands: Slots
    blocking_reads: Slots
    listeners: Slots


@contextlib.asynccontextmanager
async def command(slots: Slots, what: str) -> AsyncIterator[None]:
    """Run a Redis command (or a few in a row) of the fleet in one of ``slots``, its
    failure the SDK's typed error (``store_call``)."""
    async with slots.held(), store_call(what):
        yield


async def one_command(
    slots: Slots,
    what: str,
    command: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    idempotent: bool = False,
    **kwargs: Any,
) -> T:
    """``command(*args, **kwargs)``, one Redis command of the fleet: in one of ``slots``,
    made again while the pool is full (:func:`patiently`), its failure the SDK's typed
    error (``store_call``). A command that may run twice (``idempotent``) is made once
    more if its pooled connection was found dead (:func:`is_connection_lost`)."""
    async with slots.held(), store_call(what):
        try:
            return await patiently(command, *args, **kwargs)
        except Exception as exc:
            if not (idempotent and is_connection_lost(exc)):
                raise
        # Once more, at once: redis-py reconnects the connection it found dead. One
        # retry with no backoff, so no tenacity policy.
        return await patiently(command, *args, **kwargs)


async def patiently(command: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """``command(*args, **kwargs)``, one Redis command, made again while redis-py refuses
    it because the pool is full, for up to :data:`POOL_WAIT` seconds: nothing was sent
    then, so any command may be made again, a script that is not idempotent included."""
    try:
        return await command(*args, **kwargs)
    except Exception as exc:
        if not is_pool_full(exc):
            raise
    import tenacity  # loaded on the first full pool, not with the fleet

    async def attempt() -> T:  # a coroutine function: redis-py's commands are plain ones
        return await command(*args, **kwargs)

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_pool_full),
        wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.2),
        stop=tenacity.stop_after_delay(POOL_WAIT),
        reraise=True,
    )
    return await retrying(attempt)


_shares: weakref.WeakKeyDictionary[Any, PoolShare] = weakref.WeakKeyDictionary()
"""The share of each pool (or cluster client), for as long as the pool lives."""


def share_of(redis: Any) -> PoolShare:
    """The fleet's slots on ``redis``'s pool (the same object for every store and
    budget on one pool)."""
    owner = getattr(redis, "connection_pool", None) or redis
    try:
        return _shares[owner]
    except KeyError:
        pass
    except TypeError:  # an object weakref cannot point to: slots of its own
        return _new_share(redis)
    share = _shares[owner] = _new_share(redis)
    return share


def _new_share(redis: Any) -> PoolShare:
    size = pool_size(redis)
    if size is None:
        return PoolShare(Slots(None), Slots(None), Slots(None))
    quarter = max(1, size // 4)
    return PoolShare(Slots(quarter), Slots(quarter), Slots(quarter))


def pool_size(redis: Any) -> int | None:
    """The pool's ``max_connections``; ``None`` for a pool without a usable limit."""
    pool = getattr(redis, "connection_pool", None)
    if pool is not None:
        ceiling = getattr(pool, "max_connections", None)
    else:  # RedisCluster: each node's pool has the client's max_connections
        kwargs = getattr(redis, "connection_kwargs", None)
        ceiling = kwargs.get("max_connections") if isinstance(kwargs, dict) else None
    if not isinstance(ceiling, int) or isinstance(ceiling, bool) or ceiling < 1:
        return None
    return ceiling
