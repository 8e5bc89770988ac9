"""Reading a number from text another party wrote (a header, a JSON string, a stored
field, a command-line argument), strictly and in one place.

Python's ``int()`` and ``float()`` read far more than any wire format holds: ``"1_000"``,
whitespace around the number (Unicode's included), the decimal digits of any script
(Arabic-Indic ``"\u0663\u0660"``, fullwidth ``"\uff13\uff10"``: both 30), a ``+`` sign,
``"nan"``, ``"inf"`` and ``"infinity"`` in any case, and ``"1e400"`` read as an infinity.
Here a number is only what its format says:

- :func:`digits`: ``1*DIGIT``, ASCII digits and nothing else (RFC 9110's
  delta-seconds and ``Content-Length``, a port, a count);
- :func:`decimal`: a JSON number's text (``-?DIGITS[.DIGITS][(e|E)[+-]DIGITS]``,
  ASCII), finite once read;
- :func:`argument_decimal`: a command line's unsigned decimal, which may also start or
  end with its point (``.5``, ``5.``, as ``sleep .5`` takes), finite once read.

Each returns ``None`` for any other text, and its caller says what that means: an
error of its own type, or a documented fallback.
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = ["MAX_DIGITS", "argument_decimal", "decimal", "digits", "is_digits"]

MAX_DIGITS: Final = 18
"""The most digits :func:`digits` reads by default: every integer of up to 18 digits fits
in a signed 64-bit integer, which is more than any length, count or port."""

_DIGITS: Final = re.compile(r"[0-9]+")
_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_ARGUMENT_DECIMAL: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def is_digits(text: str) -> bool:
    """Whether ``text`` is ``1*DIGIT``: one or more ASCII digits, nothing else (no sign,
    no whitespace, no ``_``, no digit of another script)."""
    return _DIGITS.fullmatch(text) is not None


def digits(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative ``int`` if it is ``1*DIGIT`` (:func:`is_digits`) of at
    most ``max_digits`` digits; ``None`` otherwise."""
    if len(text) > max_digits or not is_digits(text):
        return None
    return int(text)


def decimal(text: str) -> float | None:
    """``text`` as a finite ``float`` if it is a JSON number's text (``"50"``, ``"-1.5"``,
    ``"2e3"``: ASCII, no whitespace, no ``+`` in front, no ``.5`` or ``5.``); ``None``
    otherwise, and for one too large for a float (``"1e400"``). A number too small for a
    float (``"1e-400"``) is 0.0, as JSON's parser reads it."""
    if _DECIMAL.fullmatch(text) is None:
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def argument_decimal(text: str) -> float | None:
    """``text``, a command-line argument, as a finite non-negative ``float`` if it is an
    unsigned decimal in ASCII: a JSON number's text without its sign, or one whose
    point starts or ends it (``"0.5"``, ``".5"``, ``"5."``, ``"1e3"``); ``None``
    otherwise (``"+5"``, ``"-1"``, ``" 5"``, ``"1_000"``, ``"nan"``, ``"."``, ``"1e400"``)."""
    if _ARGUMENT_DECIMAL.fullmatch(text) is None:
        return None
    number = float(text)
    return number if math.isfinite(number) else None
