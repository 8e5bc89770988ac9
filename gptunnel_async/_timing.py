"""The SDK's one way to pause between attempts and polls.

Every retry backoff and poll interval goes through :func:`sleep`, so a test can make all
of them instant (``gptunnel_async.testing``) or record what was asked for.
"""

import asyncio

_instant = False


def set_instant(enabled: bool) -> None:
    """Make every SDK pause return at once (``True``) or take its real time (``False``)."""
    global _instant
    _instant = enabled


def is_instant() -> bool:
    """Whether pauses are currently instant."""
    return _instant


async def sleep(seconds: float) -> None:
    """Pause for ``seconds``, or just yield to the event loop when pauses are instant."""
    await asyncio.sleep(0 if _instant else max(0.0, seconds))
