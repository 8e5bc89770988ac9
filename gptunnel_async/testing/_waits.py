"""The testing switch that makes every SDK pause instant, like stamina's testing mode.

Retry backoffs and poll intervals all go through one sleep; with instant waits on,
``wait_for_result`` on a scripted task finishes as fast as the emulator answers.
Deadlines still follow the real clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import _timing

__all__ = ["instant_waits", "instant_waits_enabled", "set_instant_waits"]


def set_instant_waits(enabled: bool = True) -> None:
    """Make every retry backoff and poll interval instant (``True``) or real (``False``)."""
    _timing.set_instant(enabled)


def instant_waits_enabled() -> bool:
    """Whether SDK pauses are currently instant."""
    return _timing.is_instant()


@contextlib.contextmanager
def instant_waits(enabled: bool = True) -> Iterator[None]:
    """Instant (or real) pauses inside the block; the previous setting comes back after."""
    previous = _timing.is_instant()
    _timing.set_instant(enabled)
    try:
        yield
    finally:
        _timing.set_instant(previous)
