"""The SDK's loggers, ``gptunnel_async`` and those under it (``gptunnel_async.fleet``):
every line they emit is bounded and printable.

A filter on each of them puts each text argument of a record (a status, an exception, a
URL) on one line, escapes its control characters and cuts it to a few hundred
characters before any handler formats it, so a server can neither flood a log nor
forge lines in it. It runs only for records that are emitted:
a disabled level costs nothing.
"""

from __future__ import annotations

import logging
from typing import Final

from ._sansio.text import clip

__all__ = ["LOG_TEXT", "logger", "sdk_logger"]

LOG_TEXT: Final = 300
"""The longest text argument of a log line, in characters."""


class _BoundedArguments(logging.Filter):
    """Puts every text argument (and an exception, as its text) on one printable line of at
    most :data:`LOG_TEXT` characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_bounded(arg) for arg in record.args)
        if not isinstance(record.msg, str):
            record.msg = _bounded(record.msg)
        return True


def _bounded(arg: object) -> object:
    """A text argument (or an exception, as its text) on one line, printable, bounded."""
    return clip(arg, LOG_TEXT) if isinstance(arg, str | BaseException) else arg


def sdk_logger(name: str) -> logging.Logger:
    """The logger ``name`` (``gptunnel_async`` or one under it) with the bounding filter.

    A logger's filters see only the records logged on that very logger, not those its
    children pass up to its handlers: every SDK logger gets its own.
    """
    named = logging.getLogger(name)
    if not any(isinstance(known, _BoundedArguments) for known in named.filters):
        named.addFilter(_BoundedArguments())
    return named


logger: Final = sdk_logger("gptunnel_async")
"""Where the SDK logs: a DEBUG line per poll, a WARNING per retry and per failed read."""
