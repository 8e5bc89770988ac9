"""Turning a store's failures into the SDK's typed error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Final

from .._sansio.text import clip
from ..errors import StoreDataError, StoreUnavailableError, UsageError

__all__ = ["is_connection_lost", "is_pool_full", "store_call", "store_failures"]


_OTHER_LOOP: Final = ("Event loop is closed", "attached to a different loop")
"""What redis-py's asyncio connections raise (a bare ``RuntimeError``) when used on an
event loop other than the one they were made on."""


def store_failures() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the store failed": redis-py's, and the network's."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the in-memory store runs without redis-py
        return (OSError,)
    return (RedisError, OSError)


def cancellation_watch() -> Callable[[], bool]:
    """A check of whether the running task has been cancelled since this call: not by a
    cancellation it had caught before (a task cleaning up after one), only by one that
    came since, which a client library (redis-py) may have swallowed inside a call."""
    task = asyncio.current_task()
    if task is None:
        return lambda: False
    before = task.cancelling()
    return lambda: task.cancelling() > before


@contextlib.asynccontextmanager
async def store_call(what: str) -> AsyncIterator[None]:
    """Run a store operation; its failure becomes :class:`StoreUnavailableError`, or
    :class:`StoreDataError` where Redis says a key holds a value of another type (one
    that someone else wrote)."""
    cancelled = cancellation_watch()
    try:
        yield
    except store_failures() as exc:
        if cancelled():
            # redis-py may turn a cancellation into a connection error: stop anyway.
            raise asyncio.CancelledError from exc
        if str(exc).startswith("WRONGTYPE"):  # Redis: a key holds another type of value
            raise StoreDataError(
                f"{what}: a key of the fleet holds a value of another type ({_reason(exc)})"
            ) from exc
        if is_login_refused(exc):
            raise StoreUnavailableError(_login_refused(what, exc)) from exc
        raise StoreUnavailableError(
            f"{what}: the store failed ({_reason(exc)}){_pool_full_hint(exc)}"
            f"{_unreachable_hint(exc)}"
        ) from exc
    except RuntimeError as exc:
        if not any(text in str(exc) for text in _OTHER_LOOP):
            raise
        raise UsageError(
            f"{what}: the Redis client was used on another event loop before (an earlier "
            "asyncio.run, say), whose connections it still holds: make the client, and "
            "the store or budget on it, in the loop that uses them"
        ) from exc


def is_connection_lost(exc: BaseException) -> bool:
    """Whether redis-py lost the command's connection (Redis restarted, failed over, or
    closed it while idle, as its ``timeout`` setting or a NAT does): the first command
    on each such pooled connection fails so, though Redis is up. Not a connection that
    could not be made (Redis is down: another try fails alike, after as long), a
    timeout (Redis may be stalled), nor a full pool."""
    try:
        from redis import exceptions
    except ImportError:  # the in-memory store runs without redis-py
        return False
    if not isinstance(exc, exceptions.ConnectionError) or is_pool_full(exc):
        return False
    return " connecting to " not in str(exc)  # redis-py's text for a failed connect


def is_unreachable(exc: BaseException) -> bool:
    """Whether redis-py could not make a connection to Redis at all (nothing listens at
    the address, a name that does not resolve, a host that cannot be reached): a
    mistyped URL, or a Redis not started, as often as a Redis that is down."""
    try:
        from redis import exceptions
    except ImportError:  # the in-memory store runs without redis-py
        return False
    if not isinstance(exc, exceptions.ConnectionError) or is_pool_full(exc):
        return False
    return " connecting to " in str(exc)  # redis-py's text for a failed connect


def _unreachable_hint(exc: BaseException) -> str:
    """What to check when no connection could be made."""
    if not is_unreachable(exc):
        return ""
    return "; is Redis running there, and is the address in the client's URL its own?"


def is_pool_full(exc: BaseException) -> bool:
    """Whether redis-py refused a command because its connection pool was full (its
    ``MaxConnectionsError``; before redis-py 6, a ``ConnectionError`` of that text):
    nothing was sent to Redis then."""
    try:
        from redis import exceptions
    except ImportError:  # the in-memory store runs without redis-py
        return False
    full = getattr(exceptions, "MaxConnectionsError", ())
    return isinstance(exc, full) or (
        isinstance(exc, exceptions.ConnectionError) and str(exc) == "Too many connections"
    )


def _pool_full_hint(exc: BaseException) -> str:
    """What to do when the pool stayed full."""
    if not is_pool_full(exc):
        return ""
    return (
        "; the Redis client's connection pool stayed full, the application's commands "
        "included: give it a larger max_connections, or a BlockingConnectionPool"
    )


def is_login_refused(exc: BaseException) -> bool:
    """Whether Redis refused the client's login: no password where one is needed, a
    wrong one, an unknown or disabled user (redis-py's ``AuthenticationError``, or a
    bare ``NOAUTH`` / ``WRONGPASS`` reply)."""
    try:
        from redis import exceptions
    except ImportError:  # the in-memory store runs without redis-py
        return False
    refused = (exceptions.AuthenticationError, exceptions.AuthenticationWrongNumberOfArgsError)
    return isinstance(exc, refused) or str(exc).startswith(("NOAUTH", "WRONGPASS"))


def _login_refused(what: str, exc: BaseException) -> str:
    """The text of a login Redis refused, short enough for one log line (300 characters)
    to hold it whole: redis-py's words for it ("HELLO must be called with the client
    already authenticated, otherwise ...") name no password, and run long."""
    return (
        f"{what}: Redis refused the client's login ({_reason(exc, 60)}): give the client "
        "the user and password Redis asks for, in its URL: redis://USER:PASSWORD@host:port/db"
    )


def _reason(exc: BaseException, limit: int = 200) -> str:
    """``Type: its text``, bounded (to ``limit`` characters of text) and printable
    (redis-py's texts name the host and the cause, such as "Connection refused", never
    the password)."""
    text = clip(exc, limit)  # printable already: clip shortens with shorten()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
