"""The progress message: a text bar, and edits paced the way Telegram requires.

Telegram lets a bot change a chat about once a second and rejects an edit that changes
nothing. The bot reads its wait through ``gptunnel_async.throttle``, which passes on at
most one progress event per second (the latest, never two alike) while the wait keeps
reading. :class:`ThrottledMessage` guards the message itself: it edits only when the
text changes (two statuses can read the same) and never twice within ``interval``
seconds, the closing "done" or "failed" edit included: a change that comes sooner waits
out the rest of the interval rather than being dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

BAR_WIDTH = 10
EDIT_INTERVAL = 1.0
"""Seconds between two edits of the progress message: Telegram's pace for one chat."""
QUEUED_STATUSES = frozenset({"idle", "queued"})

Edit = Callable[[str], Awaitable[object]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


def progress_text(status: str, percent: int, remaining: float | None = None) -> str:
    """The progress message for a task in ``status`` at ``percent``: a line and a bar.

    Args:
        status: the task's status, as the API sent it.
        percent: how far along it is, 0 to 100.
        remaining: the predicted seconds until it is done (a progress event's
            ``remaining``), or ``None`` while there is nothing to go by.

    Returns:
        Two lines, e.g. ``"Swapping faces…"`` and ``"▓▓▓▓░░░░░░ 40 %, about 30 s left"``;
        the time left only while ``remaining`` is known and the task short of 100 %,
        never "about 0 s" (a task a little late is "about 1 s" away).
    """
    filled = round(percent * BAR_WIDTH / 100)
    label = "Waiting in the queue…" if status in QUEUED_STATUSES else "Swapping faces…"
    left = (
        "" if remaining is None or percent >= 100 else f", about {max(1, round(remaining))} s left"
    )
    return f"{label}\n{'▓' * filled}{'░' * (BAR_WIDTH - filled)} {percent} %{left}"


class ThrottledMessage:
    """A message whose text is edited only when it changes, at most once per ``interval``.

    Args:
        edit: changes the message's text, e.g. a sent message's ``edit_text``.
        text: the text the message shows now; it was just sent, which counts as a change.
        interval: the least number of seconds between two changes.
        clock: the time in seconds; tests pass a fake one.
        sleep: pauses for a number of seconds; tests pass one that moves the fake clock.
    """

    def __init__(
        self,
        edit: Edit,
        text: str,
        *,
        interval: float = EDIT_INTERVAL,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.text = text
        self._edit = edit
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._changed_at = clock()

    async def show(self, text: str) -> None:
        """Make the message show ``text``, once ``interval`` has passed since the last change.

        Args:
            text: the new text; the same text as now changes nothing.
        """
        if text == self.text:
            return
        wait = self._changed_at + self._interval - self._clock()
        if wait > 0:
            await self._sleep(wait)
        await self._edit(text)
        self.text = text
        self._changed_at = self._clock()
