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


class _Block:
    """One open :func:`instant_waits` block and its setting (``set_instant_waits``
    inside it changes it); compared by identity."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled


_open_blocks: list[_Block] = []
"""The :func:`instant_waits` blocks now open, oldest first, each with its setting. The
newest open one decides, so blocks that overlap in concurrent tasks and end in any
order leave the setting as it was before them (restoring "the previous setting" at
each end left instant waits on for good when two blocks ended out of order)."""

_outside_blocks = False
"""The setting from before the first of the blocks now open, which comes back once
they have all ended."""


def set_instant_waits(enabled: bool = True) -> None:
    """Make every retry backoff and poll interval instant, or real again. Inside an
    :func:`instant_waits` block, until the block ends (then the setting from before it
    comes back); outside any block, from now on.

    Args:
        enabled: ``True`` for instant pauses, ``False`` for real ones.
    """
    if _open_blocks:
        _open_blocks[-1].enabled = enabled
    _timing.set_instant(enabled)  # outside any block, the next block to open finds it


def instant_waits_enabled() -> bool:
    """Whether SDK pauses are instant now.

    Returns:
        ``True`` while instant waits are on.
    """
    return _timing.is_instant()


@contextlib.contextmanager
def instant_waits(enabled: bool = True) -> Iterator[None]:
    """Instant (or real) pauses inside the block; the previous setting comes back after.

    Blocks may overlap in concurrent tasks and end in any order: while any is open,
    the newest open one's setting holds; once all have ended, the one from before
    them (:func:`set_instant_waits`'s).

    Args:
        enabled: ``True`` for instant pauses in the block, ``False`` for real ones.

    Yields:
        Nothing; the setting lasts while the block runs.
    """
    global _outside_blocks
    if not _open_blocks:
        _outside_blocks = _timing.is_instant()
    block = _Block(enabled)
    _open_blocks.append(block)
    _timing.set_instant(enabled)
    try:
        yield
    finally:
        _open_blocks.remove(block)
        _timing.set_instant(_open_blocks[-1].enabled if _open_blocks else _outside_blocks)
