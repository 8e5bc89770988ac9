"""Parsing JSON that another party wrote (the API, a webhook, the fleet's store), even
when it holds an integer too long for Python to read.

Python refuses to turn a string of more than ``sys.get_int_max_str_digits()`` digits
(4,300 by default) into an ``int``: ``json.loads`` then fails on the whole document,
for one number in a field nobody needs, and its message tells the user to call
``sys.set_int_max_str_digits``. Here such an integer is read as an infinity with its
sign instead, the value ``1e999`` already parses to, so the models treat it like any
other out-of-range number: an optional field drops it or takes its default, and a
required one (an id) is still a typed error. The usual document pays nothing: it is
parsed once, as ``json.loads`` would, and only the failure is parsed again.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["loads"]


def loads(document: str | bytes) -> Any:
    """``json.loads(document)``; an integer over Python's digit limit is read as
    ``±math.inf`` rather than failing the whole document.

    Raises:
        ValueError: the document is not JSON (``json.JSONDecodeError``), or bytes that
            are not in a JSON encoding (``UnicodeDecodeError``).
        RecursionError: it is nested too deeply.
    """
    try:
        return json.loads(document)
    except ValueError as exc:
        if not _over_long_int(exc):
            raise
    return json.loads(document, parse_int=_int_or_infinity)


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
