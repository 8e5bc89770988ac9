"""One HTTP request to the API: aiohttp, a per-request timeout, tenacity retries, Retry-After.

Everything that can go wrong on the wire leaves this module as a typed
:class:`~gptunnel_async.errors.GPTunnelError`; only transient failures are retried.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

import aiohttp
import tenacity
from yarl import URL

from . import _timing
from ._protocol import error_from_response, is_refused, is_transient, redact
from ._version import VERSION
from .errors import APIConnectionError, APITimeoutError

__all__ = ["RETRY_AFTER_CAP", "Decoder", "Transport"]

T = TypeVar("T")

Decoder = Callable[[bytes, int], T]
"""Turns a 2xx answer's (body, status) into a model, or raises the typed error it holds."""

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

    That is a refusal before any work (429, 503, media's "heavy load"), or a connection
    that never opened.
    """
    return is_refused(exc) or (
        isinstance(exc, APIConnectionError)
        and isinstance(exc.__cause__, aiohttp.ClientConnectorError)
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
    ) -> None:
        self.base_url = base_url
        self.origin = URL(base_url).origin()
        self.timeout = timeout
        self.max_retries = max_retries
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
        decode: Decoder[T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> T:
        """Send one API request, retrying transient failures; return the 2xx answer decoded.

        ``decode`` runs inside each attempt, so an error a 2xx body carries (media's
        ``code``) is retried by the same rules as an HTTP status. A request that is not
        ``idempotent`` (one that creates a paid task) is retried only where the server
        surely did nothing, so a retry never starts a second task.
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        retry_if = is_transient if idempotent else _safe_to_resend
        result: T = await self.retrying(retry_if)(self._attempt, method, url, params, json, decode)
        return result

    @contextlib.contextmanager
    def wire_errors(self, what: str) -> Iterator[None]:
        """Turn aiohttp's and the socket's failures inside the block into typed errors."""
        try:
            yield
        except TimeoutError as exc:
            raise APITimeoutError(f"{what} timed out after {self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            reason = self.redact(str(exc)) or type(exc).__name__
            raise APIConnectionError(f"{what} failed: {reason}") from exc

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json: Any,
        decode: Decoder[T],
    ) -> T:
        with self.wire_errors(f"{method} {URL(url).path}"):
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
        if 200 <= response.status < 300:
            return decode(body, response.status)
        raise error_from_response(response.status, response.headers, body, secret=self._api_key)
