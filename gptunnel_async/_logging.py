"""The SDK's loggers, ``gptunnel_async`` and those under it (``gptunnel_async.fleet``):
every line they emit is bounded and printable.

A filter on each of them puts each text argument of a record (a status, an exception, a
URL) on one line, escapes its control characters and cuts it to a few hundred
characters before any handler formats it, so a server can neither flood a log nor
forge lines in it. A record's traceback (``logger.exception``) is formatted by the
filter too: its frames as the standard library writes them, each exception's text on
one bounded, printable line. It runs only for records that are emitted:
a disabled level costs nothing.

The same filter masks, in each of those texts, the API key of every client alive in
the process (:func:`mask_in_logs`): code that holds no key, such as a fleet's store,
logs what another process stored (a dead letter's reason quoting a stored value), and
that may hold one.
"""

from __future__ import annotations

import logging
import traceback
import weakref
from collections.abc import Mapping
from typing import Final, Protocol

from ._sansio.text import SecretMask, clip

__all__ = ["LOG_TEXT", "log_with_fields", "logger", "mask_in_logs", "sdk_logger"]

LOG_TEXT: Final = 300
"""The longest text argument of a log line, in characters."""

TRACEBACK_FRAMES: Final = 30
"""The most frames of one exception a logged traceback shows: the innermost ones."""

TRACEBACK_CHAIN: Final = 5
"""The most exceptions of a chain (``__cause__``, ``__context__``) a logged traceback shows."""

TRACEBACK_NOTES: Final = 5
"""The most notes (``add_note``) of one exception a logged traceback shows."""

_CAUSED: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_DURING: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"


class _HoldsKey(Protocol):
    """What holds an API key: a client's transport."""

    @property
    def secret(self) -> str: ...


_MASKS: Final[weakref.WeakKeyDictionary[_HoldsKey, SecretMask]] = weakref.WeakKeyDictionary()
"""The mask of each live holder's key, dropped with the holder."""

_MASKED_TEXT: Final = 16 * LOG_TEXT + 1024
"""How much of a text the keys are looked for in before it is cut to :data:`LOG_TEXT`:
enough to fill it even if every character of it were encoded (as ``excerpt`` does)."""


def mask_in_logs(holder: _HoldsKey) -> None:
    """Mask ``holder.secret`` in every text the SDK's loggers emit while ``holder``
    lives (each client's transport registers itself)."""
    _MASKS[holder] = SecretMask(holder.secret)


def _masked(text: str) -> str:
    """``text`` with the key of every live holder masked."""
    for mask in list(_MASKS.values()):
        text = mask(text)
    return text


class _BoundedArguments(logging.Filter):
    """Puts every text argument (and an exception, as its text) on one printable line of at
    most :data:`LOG_TEXT` characters, every live client's key masked in it, and in the
    message and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_bounded(arg) for arg in record.args)
        record.msg = _masked(record.msg) if isinstance(record.msg, str) else _bounded(record.msg)
        if record.exc_info and record.exc_info[1] is not None and record.exc_text is None:
            record.exc_text = _masked(bounded_traceback(record.exc_info[1]))
        return True


def _bounded(arg: object) -> object:
    """A text argument (or an exception, as its text) on one line, printable, bounded,
    every live client's key masked in it (before it is cut: a key cut through would
    leave a piece no mask finds).

    Whitespace around a text argument stays as one space, within the bound: a message
    built as ``"%s; retry %d in %.2fs%s"`` with ``" (task ...)"`` keeps the space that
    separates it from what comes before."""
    if not isinstance(arg, str):
        if not isinstance(arg, BaseException):
            return arg
        return clip(_masked(clip(arg, _MASKED_TEXT)), LOG_TEXT)
    lead = " " if arg[:1].isspace() else ""
    trail = " " if arg[-1:].isspace() and arg.strip() else ""
    return lead + clip(_masked(arg[:_MASKED_TEXT]), LOG_TEXT - len(lead) - len(trail)) + trail


def bounded_traceback(error: BaseException) -> str:
    """``error``'s traceback as ``logging`` writes one, with each exception's text on one
    printable line of at most :data:`LOG_TEXT` characters (an exception may quote server
    text), at most :data:`TRACEBACK_FRAMES` frames per exception and
    :data:`TRACEBACK_CHAIN` exceptions of its chain, and each exception's notes below
    its line, as ``traceback`` writes them (bounded the same way).

    The frames are ``traceback.format_tb``'s; only the exception lines, which
    ``traceback`` writes as the text is, are made here.
    """
    parts: list[str] = []
    for exc, led_on in reversed(_chain(error)):
        frames = traceback.format_tb(exc.__traceback__, limit=-TRACEBACK_FRAMES)
        head = "Traceback (most recent call last):\n" if frames else ""
        text = clip(exc, LOG_TEXT)
        line = f"{type(exc).__qualname__}: {text}" if text else type(exc).__qualname__
        notes = "".join(f"{clip(note, LOG_TEXT)}\n" for note in _notes(exc))
        parts.append(f"{head}{''.join(frames)}{clip(line, LOG_TEXT + 100)}\n{notes}{led_on}")
    return "".join(parts).rstrip("\n")


def _notes(error: BaseException) -> list[object]:
    """``error``'s notes (PEP 678), as ``traceback`` writes them below its line: the
    first :data:`TRACEBACK_NOTES`, each made one bounded, printable line."""
    notes = getattr(error, "__notes__", None)
    return list(notes[:TRACEBACK_NOTES]) if isinstance(notes, list | tuple) else []


def _chain(error: BaseException) -> list[tuple[BaseException, str]]:
    """``error`` and the exceptions that led to it, innermost first, each with the line
    that says how it led to the one before; at most :data:`TRACEBACK_CHAIN`, and each
    once (a chain may loop back)."""
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = error
    link = ""
    while current is not None and len(chain) < TRACEBACK_CHAIN:
        if any(current is seen for seen, _ in chain):
            break
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSED
        elif not current.__suppress_context__:
            current, link = current.__context__, _DURING
        else:
            current = None
    return chain


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

_NOT_EXTRA: Final = frozenset({"message", "asctime"})
"""Names ``logging`` refuses in ``extra=`` though a new record has no such attribute."""


def log_with_fields(
    target: logging.Logger, level: int, msg: str, *args: object, fields: Mapping[str, object]
) -> None:
    """``target.log(level, msg, *args)``, the record carrying ``fields`` as attributes
    (``record.task_id``, for a JSON formatter).

    A field the application's records already have is left as the application set it
    (a record factory that adds ``task_id`` or ``status`` from a context of its own):
    ``extra=`` naming it raises ``KeyError`` from inside ``logging``, which would end the
    wait that logs, so the record is logged with the other fields. The usual record
    pays nothing for this: only a refusal is looked at.
    """
    try:
        target.log(level, msg, *args, extra=fields, stacklevel=2)
    except KeyError:
        taken = vars(target.makeRecord(target.name, level, "", 0, msg, args, None))
        kept = {
            name: value
            for name, value in fields.items()
            if name not in taken and name not in _NOT_EXTRA
        }
        target.log(level, msg, *args, extra=kept, stacklevel=2)
