"""Retrying one request with tenacity: backoff stretched to ``Retry-After``, a WARNING per
retry.

Imported on the first retry, not with the SDK: most requests succeed at once, and
tenacity is a noticeable part of the import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import tenacity

from . import _timing
from ._transport import RETRY_AFTER_CAP

__all__ = ["controller"]

logger = logging.getLogger("gptunnel_async")

_BACKOFF: Final = tenacity.wait_exponential(multiplier=0.5, max=8.0) + tenacity.wait_random(0, 0.25)
"""0.5 s, 1 s, 2 s, 4 s, 8 s ... plus up to 0.25 s of jitter, so clients don't retry in step.

Composed from the two waits every supported tenacity has (``wait_exponential_jitter``
takes ``multiplier=`` only from tenacity 9.2.1)."""


class _WaitHonouringRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff, stretched to the server's ``Retry-After`` hint (capped)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        backoff = _BACKOFF(retry_state)
        outcome = retry_state.outcome
        hint = getattr(outcome.exception(), "retry_after", None) if outcome else None
        if hint is None:
            return backoff
        return max(backoff, min(float(hint), RETRY_AFTER_CAP))


def _retry_logger(what: str) -> Callable[[tenacity.RetryCallState], None]:
    """A ``before_sleep`` hook logging one WARNING per retry: what failed, why, and the delay."""

    def log_retry(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        logger.warning(
            "%s failed (%s); retry %d in %.2fs",
            what,
            outcome.exception() if outcome else "unknown error",
            retry_state.attempt_number,
            retry_state.upcoming_sleep,
        )

    return log_retry


def controller(
    max_retries: int, what: str, retry_if: Callable[[BaseException], bool]
) -> tenacity.AsyncRetrying:
    """A fresh tenacity controller (they keep per-call state) for ``max_retries`` retries
    of ``what`` when ``retry_if`` says an error is worth it."""
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=_WaitHonouringRetryAfter(),
        retry=tenacity.retry_if_exception(retry_if),
        sleep=_timing.sleep,
        before_sleep=_retry_logger(what),
        reraise=True,
    )
