"""How a benchmark task's ``percent`` moves: the three shapes of section (c).

Shared by ``server.py`` (real reads on loopback) and ``run.py`` (the simulated clock).
Each takes the elapsed fraction of the task (0 to 1, exclusive) and returns the
``percent`` the server reports: an ``int``, floored as GPTunnel does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

QUEUED_FRACTION: Final = 0.05


def linear(fraction: float) -> int:
    """``queued`` at 0 for the first 5 %, then rising steadily: a face swap."""
    return 0 if fraction < QUEUED_FRACTION else min(99, int(100 * fraction))


def stall(fraction: float) -> int:
    """At 0 for the first half, then jumping to 50 and rising steadily from there."""
    return 0 if fraction < 0.5 else min(99, int(100 * fraction))


def early99(fraction: float) -> int:
    """At 99 after a tenth of the time, then standing there until done."""
    return min(99, int(1000 * fraction))


SHAPES: Final[dict[str, Callable[[float], int]]] = {
    "linear": linear,
    "stall": stall,
    "early99": early99,
}
