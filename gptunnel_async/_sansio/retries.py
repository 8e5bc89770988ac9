"""Which failures are worth another try, and how long the server asks us to wait.

Pure functions over the SDK's typed errors and header values: the drivers (the
transport's tenacity controller, a wait's pacing, the rate budget) ask here and do
the waiting themselves.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from ..errors import APIConnectionError, APIError, TLSError

__all__ = [
    "RETRYABLE_STATUSES",
    "RETRY_AFTER_CAP",
    "honoured_retry_after",
    "is_refused",
    "is_transient",
    "may_have_acted",
    "parse_retry_after",
]

RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses that say "try again later" rather than "this request is wrong"."""

RETRY_AFTER_CAP: Final = 60.0
"""The longest ``Retry-After`` honoured, in seconds: a bigger hint is not worth blocking on."""

_HEAVY_LOAD: Final = frozenset({"6"})
"""The media code for "heavy load": it means what a 503 does (refused before any work),
so it is retried, a create included."""

_MEDIA_TRANSIENT: Final = _HEAVY_LOAD | {"1", "500"}
"""Media codes that mean what 5xx statuses do: "heavy load" and the two "internal error"
codes (GPTunnel's media-api/models page: media errors always come with HTTP 200, so
these are how ``/media`` says 500). Retried as a 500 is: a read again, a create not
(the task may have started)."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Returns ``None`` when the header is absent or unreadable, and never a negative number
    (nor an infinite one: delta-seconds too long for a float are the largest float).
    This is the server's own figure; :func:`honoured_retry_after` says how much of it
    the SDK waits.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        # delta-seconds (digits only) too many for a float still ask for a long pause;
        # "inf" and "nan" are no number of seconds
        return sys.float_info.max if value.isascii() and value.isdigit() else None
    return max(0.0, seconds)


def honoured_retry_after(hint: float | None) -> float | None:
    """The pause the SDK takes for a ``Retry-After`` of ``hint`` seconds: at most
    :data:`RETRY_AFTER_CAP`. The one place the cap is applied (retries, waits, the rate
    budget)."""
    return None if hint is None else min(hint, RETRY_AFTER_CAP)


def _media_code_in(exc: APIError, codes: frozenset[str]) -> bool:
    """Whether ``exc`` is a media error (sent with HTTP 200) whose code is one of ``codes``."""
    return exc.status_code < 300 and exc.code in codes


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later may succeed: network trouble, 408, 429,
    500, 502, 503, 504 (:data:`RETRYABLE_STATUSES`), or media's "heavy load" and
    "internal error" codes. A TLS failure is network trouble that does not heal."""
    if isinstance(exc, APIConnectionError):
        return not isinstance(exc, TLSError)
    return isinstance(exc, APIError) and (
        exc.status_code in RETRYABLE_STATUSES or _media_code_in(exc, _MEDIA_TRANSIENT)
    )


NOT_TAKEN_STATUSES: Final = frozenset({501, 503, 505, 511})
"""5xx statuses that say the request was not taken: not implemented, refused for load,
an HTTP version not spoken, a network's login page in the way."""


def may_have_acted(exc: BaseException) -> bool:
    """Whether an error answer leaves it open that the server acted on the request: any
    5xx (or a status past 599) but :data:`NOT_TAKEN_STATUSES`. Only 500, 502 and 504 are
    retried, but a proxy's 520 or 524 ("the origin took the request and did not answer
    in time"), a 507 or a 508 may come after the work started just as well."""
    return (
        isinstance(exc, APIError)
        and exc.status_code >= 500
        and exc.status_code not in NOT_TAKEN_STATUSES
    )


def is_refused(exc: BaseException) -> bool:
    """Whether the API refused a request before doing anything: 429, 503, media "heavy load".

    Only these (and a connection that never opened) make it safe to send a request that
    starts a paid task again.
    """
    return isinstance(exc, APIError) and (
        exc.status_code in (429, 503) or _media_code_in(exc, _HEAVY_LOAD)
    )
