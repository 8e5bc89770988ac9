"""Retrying one request with tenacity: backoff stretched to ``Retry-After``, each retry
reported to the instrumentation hooks (the default one logs a WARNING).

Imported on the first retry, not with the SDK: most requests succeed at once, and
tenacity is a noticeable part of the import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import tenacity

from . import _timing
from ._sansio.retries import honoured_retry_after
from .errors import GPTunnelError
from .instrumentation._hooks import RetryDetails, emit_retry

__all__ = ["retried"]

T = TypeVar("T")


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
        pause = honoured_retry_after(hint)
        return backoff if pause is None else max(backoff, pause)


def _retry_reporter(
    what: str, family: str, task_id: str | None
) -> Callable[[tenacity.RetryCallState], None]:
    """A ``before_sleep`` hook telling the instrumentation hooks about each retry (the
    default one logs a WARNING: what failed, why, and the delay)."""

    def report_retry(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome else None
        if isinstance(error, GPTunnelError):  # the only errors retry_if lets through
            # Kept without its frames (they held the key to mask it, and the answer),
            # for a deadline that cuts the retry pause short; the error is not raised
            # again (the next attempt makes its own).
            _timing.failed_attempt.set(error.with_traceback(None))
            emit_retry(
                RetryDetails(
                    scope="request",
                    what=what,
                    family=family,
                    task_id=task_id,
                    attempt=retry_state.attempt_number,
                    wait=retry_state.upcoming_sleep,
                    error=error,
                    status_code=getattr(error, "status_code", None),
                )
            )

    return report_retry


async def retried(
    attempt: Callable[[], Awaitable[T]],
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    max_retries: int,
    what: str,
    retry_if: Callable[[BaseException], bool],
    family: str,
    task_id: str | None,
) -> T:
    """``attempt()``, tried again up to ``max_retries`` times when ``retry_if`` says an
    error is worth it; ``what`` (reading ``task_id`` of ``family``) names it in reports.
    ``sleep`` pauses between attempts (the client's, which its ``close()`` ends); by
    default :func:`_timing.sleep`.

    Each call gets a fresh tenacity controller: controllers keep per-call state.
    """
    controller = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=_WaitHonouringRetryAfter(),
        retry=tenacity.retry_if_exception(retry_if),
        sleep=sleep or _timing.sleep,
        before_sleep=_retry_reporter(what, family, task_id),
        reraise=True,
    )
    before = _timing.failed_attempt.get()
    try:
        result: T = await controller(attempt)
    except asyncio.CancelledError as exc:  # the wait's deadline, say: the failure stays
        raise exc.with_traceback(None)  # noqa: B904  (see below)
    except BaseException as exc:
        _timing.failed_attempt.set(before)  # the retries ended: their error says it all
        # The traceback runs through tenacity's frames, which keep the last outcome,
        # which holds this very error: a reference cycle per failed call, cut here.
        raise exc.with_traceback(None)  # noqa: B904  (its chain stays as it was)
    finally:
        # tenacity keeps that state as the controller's own bound methods in a list the
        # controller holds: a reference cycle per retried call, left to the collector.
        state = getattr(controller, "iter_state", None)  # tenacity >= 8.3
        if state is not None:
            state.reset()
    _timing.failed_attempt.set(before)
    return result
