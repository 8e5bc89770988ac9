"""The SDK's one way to pause between attempts and polls.

Every retry backoff and poll interval goes through :func:`sleep`, so a test can make all
of them instant (``gptunnel_async.testing``) or record what was asked for.
"""

import asyncio
from collections.abc import Awaitable

_instant = False


def set_instant(enabled: bool) -> None:
    """Make every SDK pause return at once (``True``) or take its real time (``False``)."""
    global _instant
    _instant = enabled


def is_instant() -> bool:
    """Whether pauses are currently instant."""
    return _instant


def sleep(seconds: float) -> Awaitable[None]:
    """Pause for ``seconds``, or just yield to the event loop when pauses are instant.

    Await the result: a future the event loop's timer resolves, with no coroutine
    around it, so each of thousands of sleeping waits holds a timer and a future only.
    A cancelled sleep's timer fires later into nothing.
    """
    if _instant or seconds <= 0:
        return asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    loop.call_later(seconds, _wake, woken)
    return woken


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
