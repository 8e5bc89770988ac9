"""The command line's ``--json`` output: one line of strict JSON per record."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

__all__ = ["json_line"]

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of strict JSON (RFC 8259) in ASCII, whatever the output's
    encoding: other characters as ``\\u`` escapes (Python's own ``\\xe9``, which an
    encoding's ``backslashreplace`` writes, is no JSON). A number that is not finite (a
    server's ``1e999``, a fleet's stored ``-inf``) is ``null``, since ``Infinity`` and
    ``NaN`` are no JSON; a lone surrogate (a server's ``"\\udfff"``) is U+FFFD, since
    strict readers refuse one."""
    return json.dumps(_strict(record), allow_nan=False) + "\n"


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)  # the same string back when it has none
    if isinstance(value, dict):
        return {_strict(key): _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value
