"""Parsing JSON that another party wrote (the API, a webhook, the fleet's store), even
when it holds an integer too long for Python to read, or a trailing comma.

Python refuses to turn a string of more than ``sys.get_int_max_str_digits()`` digits
(4,300 by default) into an ``int``: ``json.loads`` then fails on the whole document,
for one number in a field nobody needs, and its message tells the user to call
``sys.set_int_max_str_digits``. Here such an integer is read as an infinity with its
sign instead, the value ``1e999`` already parses to, so the models treat it like any
other out-of-range number: an optional field drops it or takes its default, and a
required one (an id) is still a typed error.

GPTunnel's docs print two answers with a trailing comma (``/balance``'s, and a 401's
``{"error": {..., "type": "unauthorized_request_error",}}``), which JSON does not
allow. A comma the parser finds right before the ``}`` or ``]`` that closes an object
or array is dropped, and the document parsed again, so an answer sent as printed
reads as meant; any other fault is still ``ValueError``. The usual document pays
nothing: it is parsed once, as ``json.loads`` would, and only a failure is looked at.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

__all__ = ["MAX_TRAILING_COMMAS", "loads"]

MAX_TRAILING_COMMAS: Final = 8
"""The most trailing commas dropped from one document: each costs one more parse, so
a document of thousands (4 MiB of ``[1,]``) is refused rather than parsed thousands of
times; a printed example has one or two."""


def loads(document: str | bytes) -> Any:
    """``json.loads(document)``; an integer over Python's digit limit is read as
    ``±math.inf`` rather than failing the whole document, and a trailing comma
    (``{"a": 1,}``, ``[1,]``; at most :data:`MAX_TRAILING_COMMAS`) is dropped.

    Raises:
        ValueError: the document is not JSON (``json.JSONDecodeError``, the first
            fault's), or bytes that are not in a JSON encoding (``UnicodeDecodeError``).
        RecursionError: it is nested too deeply.
    """
    try:
        return _loads(document)
    except json.JSONDecodeError as exc:
        mended = _without_trailing_commas(exc.doc, exc.pos, exc.msg)
        if mended is None:
            raise
    return mended[0]


def _loads(document: str | bytes) -> Any:
    """``json.loads``, an over-long integer read as an infinity."""
    try:
        return json.loads(document)
    except ValueError as exc:
        if not _over_long_int(exc):
            raise
    return json.loads(document, parse_int=_int_or_infinity)


def _without_trailing_commas(text: str, at: int, fault: str) -> tuple[Any] | None:
    """``(value,)``: ``text`` parsed once the trailing comma the parser stopped at
    (``at``, saying ``fault``) is dropped, and so on for the next ones, at most
    :data:`MAX_TRAILING_COMMAS`; ``None`` if it stopped at anything else.

    Only the text and position of each fault are kept, never the exception: its
    traceback holds this frame, and the two would make a reference cycle.
    """
    for _ in range(MAX_TRAILING_COMMAS):
        comma = _trailing_comma(text, at, fault)
        if comma is None:
            return None
        text = text[:comma] + text[comma + 1 :]
        try:
            return (_loads(text),)
        except json.JSONDecodeError as exc:
            at, fault = exc.pos, exc.msg
    return None


def _trailing_comma(text: str, at: int, fault: str) -> int | None:
    """Where the comma is that makes the parser's ``fault`` at ``at`` a trailing comma:
    Python 3.13 and newer say so, and stop at the comma; older ones stop at the ``}``
    or ``]`` after it. ``None`` for any other fault."""
    if fault.startswith("Illegal trailing comma"):
        return at if text[at : at + 1] == "," else None
    if text[at : at + 1] not in ("}", "]"):
        return None
    comma = len(text[:at].rstrip(_WHITESPACE)) - 1
    return comma if comma >= 0 and text[comma] == "," else None


_WHITESPACE: Final = " \t\r\n"
"""JSON's whitespace."""


def _over_long_int(exc: BaseException) -> bool:
    """Whether ``exc`` is ``int()``'s refusal of a string over the digit limit: a plain
    ``ValueError``, unlike the parser's ``JSONDecodeError`` or a ``UnicodeDecodeError``
    (``json.loads`` raises no other)."""
    return type(exc) is ValueError


def _int_or_infinity(digits: str) -> int | float:
    """A JSON integer as an ``int``, or ``±math.inf`` when it has too many digits."""
    try:
        return int(digits)
    except ValueError:  # over sys.get_int_max_str_digits(): out of any field's range
        return -math.inf if digits.startswith("-") else math.inf
