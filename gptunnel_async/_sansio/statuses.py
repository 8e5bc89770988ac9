"""The one vocabulary of task statuses: every family, the webhooks and the emulator
classify a raw status here.

GPTunnel documents only ``idle`` and ``done``; clients also see ``queued``,
``processing``, ``running`` and, for failures, ``failed``, ``error``, ``fail``,
``cancelled`` or ``canceled``, in whatever case the server writes them. A status is
compared ignoring case and surrounding whitespace; anything that is neither done nor
failed is pending, so a status this SDK does not know yet keeps a wait going rather
than ending it wrongly. Models keep the raw value; only the classification is shared.
"""

from __future__ import annotations

import enum
import functools
from typing import Final

__all__ = [
    "DONE_STATUSES",
    "FAILED_STATUSES",
    "MEDIA_DONE_STATUSES",
    "Stage",
    "classify",
    "normalize",
]

DONE_STATUSES: Final = frozenset({"done"})
"""Statuses that mean the task finished with a result (compared ignoring case and
surrounding whitespace)."""

FAILED_STATUSES: Final = frozenset({"failed", "error", "fail", "cancelled", "canceled"})
"""Statuses that mean the task finished without one. None is documented; these are seen."""

MEDIA_DONE_STATUSES: Final = frozenset({"done", "succeeded", "success", "completed"})
"""Statuses that mean a media task finished. ``succeeded`` is documented (on music clips);
the others are seen from different models."""

_CACHED_LENGTH: Final = 64
"""Statuses up to this long are classified once and remembered (there are a handful);
a longer one is a server's oddity, classified each time rather than kept."""


class Stage(enum.Enum):
    """Where a task stands, as its status says."""

    PENDING = "pending"
    """Not finished: ``idle``, ``queued``, ``processing``, ``running``, or unknown."""
    DONE = "done"
    """Finished with its output."""
    FAILED = "failed"
    """Finished without it."""


def normalize(status: str) -> str:
    """``status`` as the vocabulary compares it: without surrounding whitespace, case-folded."""
    return status.strip().casefold()


def classify(status: str, done: frozenset[str] = DONE_STATUSES) -> Stage:
    """The [Stage][] of a raw ``status``.

    Args:
        status: the status as the server sent it, in any case, with any surrounding
            whitespace.
        done: the normalized statuses that mean done for this family
            ([DONE_STATUSES][], or [MEDIA_DONE_STATUSES][] for media tasks).

    Returns:
        ``Stage.DONE``, ``Stage.FAILED``, or ``Stage.PENDING`` for everything else.
    """
    if len(status) <= _CACHED_LENGTH:
        return _classify_short(status, done)
    return _classify(status, done)


def _classify(status: str, done: frozenset[str]) -> Stage:
    key = normalize(status)
    if key in done:
        return Stage.DONE
    if key in FAILED_STATUSES:
        return Stage.FAILED
    return Stage.PENDING


_classify_short: Final = functools.lru_cache(maxsize=256)(_classify)
"""``_classify`` remembered: a wait asks about the same few statuses on every read."""
