"""One HTTP request to the API: aiohttp, a per-request timeout, tenacity retries, Retry-After.

Everything that can go wrong on the wire leaves this module as a typed
:class:`~gptunnel_async.errors.GPTunnelError`; only transient failures are retried.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import aiohttp
import tenacity
from yarl import URL

from . import _timing
from ._budget import RequestBudget
from ._protocol import error_from_response, is_transient, redact
from ._version import VERSION
from .errors import APIConnectionError, APIError, APITimeoutError, GPTunnelError

__all__ = ["RETRY_AFTER_CAP", "Transport"]

logger = logging.getLogger("gptunnel_async")

RETRY_AFTER_CAP: Final = 60.0
"""The longest ``Retry-After`` honoured, in seconds: a bigger hint is not worth blocking on."""

_BACKOFF: Final = tenacity.wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.25)
"""0.5 s, 1 s, 2 s, 4 s, 8 s ... plus up to 0.25 s of jitter, so clients don't retry in step."""


class _WaitHonouringRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff, stretched to the server's ``Retry-After`` hint (capped)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        backoff = _BACKOFF(retry_state)
        outcome = retry_state.outcome
        hint = getattr(outcome.exception(), "retry_after", None) if outcome else None
        if hint is None:
            return backoff
        return max(backoff, min(float(hint), RETRY_AFTER_CAP))


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    outcome = retry_state.outcome
    method, url = retry_state.args[:2]
    logger.warning(
        "%s %s failed (%s); retry %d in %.2fs",
        method,
        URL(url).path,
        outcome.exception() if outcome else "unknown error",
        retry_state.attempt_number,
        retry_state.upcoming_sleep,
    )


def _safe_to_resend(exc: BaseException) -> bool:
    """For requests that start a task: retry only when the server surely did not act on it.

    That is a 429 or 503 (refused before any work), or a connection that never opened.
    """
    if isinstance(exc, APIError):
        return exc.status_code in (429, 503)
    return isinstance(exc, APIConnectionError) and isinstance(
        exc.__cause__, aiohttp.ClientConnectorError
    )


class Transport:
    """Sends requests to ``base_url`` with the API key, which goes nowhere else."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float,
        max_retries: int,
        session: Callable[[], aiohttp.ClientSession],
        budget: RequestBudget,
    ) -> None:
        self.base_url = base_url
        self.origin = URL(base_url).origin()
        self.timeout = timeout
        self.max_retries = max_retries
        self.budget = budget
        self._api_key = api_key
        self._session = session
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers: Final = {
            "Authorization": api_key,
            "Accept": "application/json",
            "User-Agent": f"gptunnel-async/{VERSION}",
        }

    def session(self) -> aiohttp.ClientSession:
        """The session to send with (created on first use by the client)."""
        return self._session()

    def headers_for(self, url: URL) -> Mapping[str, str]:
        """Request headers for ``url``: with the key only on ``base_url``'s origin."""
        if url.origin() == self.origin:
            return self._headers
        return {"User-Agent": self._headers["User-Agent"]}

    def redact(self, text: str) -> str:
        """``text`` with the API key masked."""
        return redact(text, self._api_key)

    def retrying(
        self, retry_if: Callable[[BaseException], bool] = is_transient
    ) -> tenacity.AsyncRetrying:
        """A fresh tenacity controller (they keep per-call state): backoff with Retry-After."""
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=_WaitHonouringRetryAfter(),
            retry=tenacity.retry_if_exception(retry_if),
            sleep=_timing.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> tuple[int, bytes]:
        """Send one API request, retrying transient failures; return (status, body) of a 2xx.

        A request that is not ``idempotent`` (one that creates a paid task) is retried
        only where the server surely did nothing, so a retry never starts a second task.
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        retry_if = is_transient if idempotent else _safe_to_resend
        try:
            return await self._attempt(method, url, params, json)
        except GPTunnelError as exc:
            if not retry_if(exc) or self.max_retries == 0:
                raise
            first_failure = exc
        # Most requests succeed at once and never pay for a retry controller. Failures
        # replay the first attempt's error into tenacity, which logs, backs off and
        # retries exactly as if it had made that attempt itself.
        replay = [first_failure]

        async def attempt(*args: Any) -> tuple[int, bytes]:
            if replay:
                raise replay.pop()
            return await self._attempt(*args)

        result: tuple[int, bytes] = await self.retrying(retry_if)(
            attempt, method, url, params, json
        )
        return result

    @contextlib.contextmanager
    def wire_errors(self, what: str) -> Iterator[None]:
        """Turn aiohttp's and the socket's failures inside the block into typed errors."""
        try:
            yield
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wire_error(exc, what) from exc

    def wire_error(self, exc: TimeoutError | aiohttp.ClientError, what: str) -> GPTunnelError:
        """The typed error for a failure on the wire while doing ``what``."""
        if isinstance(exc, TimeoutError):
            return APITimeoutError(f"{what} timed out after {self.timeout:g}s")
        reason = self.redact(str(exc)) or type(exc).__name__
        return APIConnectionError(f"{what} failed: {reason}")

    async def _attempt(
        self, method: str, url: str, params: Mapping[str, str] | None, json: Any
    ) -> tuple[int, bytes]:
        budget = self.budget
        started = await budget.acquire()
        try:  # not ``wire_errors``: this runs for every request, and a plain try is cheaper
            async with self.session().request(
                method,
                url,
                params=params,
                json=json,
                headers=self._headers,
                timeout=self._client_timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wire_error(exc, f"{method} {URL(url).path}") from exc
        finally:
            budget.release()
        if 200 <= response.status < 300:
            return response.status, body
        error = error_from_response(response.status, response.headers, body, secret=self._api_key)
        if isinstance(error, APIError) and error.status_code == 429:
            hint = error.retry_after
            budget.rate_limited(started, None if hint is None else min(hint, RETRY_AFTER_CAP))
        raise error
