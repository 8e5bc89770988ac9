"""Which failures are worth another try, and how long the server asks us to wait.

Pure functions over the SDK's typed errors and header values: the drivers (the
transport's tenacity controller, a wait's pacing, the rate budget) ask here and do
the waiting themselves.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from ..errors import APIConnectionError, APIError, TLSError
from .numbers import is_digits

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
    """Seconds to wait from a ``Retry-After`` header, as RFC 9110 (10.2.3) defines it:
    delta-seconds (``1*DIGIT``, ASCII digits only) or an HTTP-date (IMF-fixdate, or the
    obsolete RFC 850 and asctime forms, asctime's day as ``2DIGIT`` or ``SP DIGIT``; a
    leap second ``:60`` is the second after ``:59``), with optional spaces or tabs
    around it.

    Returns ``None`` when the header is absent or anything else (``"1.5"``, ``"1_000"``,
    ``"+5"``, ``"٣٠"``, ``"1e3"``, ``"inf"``, a date in another form): a hint the SDK
    cannot read is ignored, never taken for some other number of seconds. Never a
    negative number (a date in the past is 0), nor an infinite one (delta-seconds too
    long for a float are the largest float). This is the server's own figure;
    :func:`honoured_retry_after` says how much of it the SDK waits.
    """
    if not value:
        return None
    value = value.strip(_OWS)
    if is_digits(value):
        return min(float(value), sys.float_info.max)  # 400 nines: inf, a long pause still
    if _HTTP_DATE.fullmatch(value) is None:
        return None
    # a leap second (23:59:60), which datetime cannot hold, is the second after :59
    leap = ":60 " in value or value.endswith(":60")
    try:
        when = parsedate_to_datetime(value.replace(":60", ":59") if leap else value)
    except ValueError:  # no such day or time: 31 Feb, 25:00
        return None
    if when.tzinfo is None:  # asctime has no zone: it is GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds() + (1.0 if leap else 0.0)
    return max(0.0, seconds)


_OWS: Final = " \t"
"""HTTP's optional whitespace (RFC 9110 5.6.3): what may surround a field's value."""

_DAY: Final = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH: Final = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME: Final = "[0-2][0-9]:[0-5][0-9]:(?:[0-5][0-9]|60)"
_HTTP_DATE: Final = re.compile(
    rf"{_DAY}, [0-3][0-9] {_MONTH} [0-9]{{4}} {_TIME} GMT"  # IMF-fixdate
    rf"|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"[0-3][0-9]-{_MONTH}-[0-9]{{2}} {_TIME} GMT"  # RFC 850
    rf"|{_DAY} {_MONTH} (?:[0-3][0-9]| [0-9]) {_TIME} [0-9]{{4}}"  # asctime
)
"""An HTTP-date in any of its three forms (RFC 9110 5.6.7), ASCII only."""


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
