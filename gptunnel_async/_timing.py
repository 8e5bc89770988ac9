"""The SDK's one way to pause between attempts and polls.

Every retry backoff and poll interval goes through :func:`sleep`, so a test can make all
of them instant (``gptunnel_async.testing``) or record what was asked for.
"""

import asyncio
from collections.abc import Awaitable, Callable

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


class Wakeup:
    """The pauses of one client's waits, so that closing the client ends them at once
    rather than at each wait's next read.

    A pause that is a future (as :func:`sleep`'s are) is kept here while it lasts;
    :meth:`interrupt` fails every one with the error it is given, and any pause asked
    for after that.
    """

    __slots__ = ("_error", "_sleeping")

    def __init__(self) -> None:
        self._sleeping: set[asyncio.Future[None]] = set()
        self._error: Callable[[], BaseException] | None = None

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Pause as :func:`sleep` does, unless :meth:`interrupt` ends the pause first.

        Raises:
            BaseException: the error :meth:`interrupt` was given, if it was called.
        """
        if self._error is not None:
            raise self._error()
        pause = sleep(seconds)
        if isinstance(pause, asyncio.Future):
            self._sleeping.add(pause)
            pause.add_done_callback(self._sleeping.discard)
        return pause

    def interrupt(self, error: Callable[[], BaseException]) -> None:
        """End every pause now, and any later one at once, with ``error()``."""
        self._error = error
        sleeping, self._sleeping = self._sleeping, set()
        for pause in sleeping:
            if not pause.done():
                pause.set_exception(error())
