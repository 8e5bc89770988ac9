"""The command line's ``--json`` output: one line of strict JSON per record."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["json_line"]


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of strict JSON (RFC 8259): a number that is not finite
    (a server's ``1e999``, a fleet's stored ``-inf``) is ``null``, since ``Infinity``
    and ``NaN`` are no JSON and strict readers (``jq``) refuse the line."""
    return json.dumps(_finite(record), ensure_ascii=False, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
