"""Turning a store's failures into the SDK's typed error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..errors import StoreUnavailableError

__all__ = ["store_call", "store_failures"]


def store_failures() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the store failed": redis-py's, and the network's."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the in-memory store runs without redis-py
        return (OSError,)
    return (RedisError, OSError)


@contextlib.asynccontextmanager
async def store_call(what: str) -> AsyncIterator[None]:
    """Run a store operation; its failure becomes :class:`StoreUnavailableError`."""
    try:
        yield
    except store_failures() as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # redis-py may turn a cancellation into a connection error: stop anyway.
            raise asyncio.CancelledError from exc
        raise StoreUnavailableError(f"{what}: the store failed ({type(exc).__name__})") from exc
