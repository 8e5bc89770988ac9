"""One HTTP request to the API: aiohttp, a per-request timeout, tenacity retries, Retry-After.

Everything that can go wrong on the wire leaves this module as a typed
:class:`~gptunnel_async.errors.GPTunnelError`; only transient failures are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._budget import RequestBudget
from ._protocol import (
    error_from_response,
    excerpt,
    is_refused,
    is_transient,
    parse_retry_after,
    redact,
)
from ._version import version
from .errors import APIConnectionError, APITimeoutError, GPTunnelError, ResponseDecodeError
from .instrumentation._hooks import LISTENING, RequestDetails, emit_request, family_of

if TYPE_CHECKING:
    import tenacity

__all__ = ["MAX_ANSWER_BYTES", "RETRY_AFTER_CAP", "Decoder", "Transport"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    """Turns a 2xx answer's (body, status) into a model, or raises the typed error it holds.

    ``secret`` is masked in every text the model or the error keeps from the body.
    """

    def __call__(self, body: bytes, status_code: int, /, *, secret: str | None = None) -> T_co:
        """Decode one answer."""


logger = logging.getLogger("gptunnel_async")

RETRY_AFTER_CAP: Final = 60.0
"""The longest ``Retry-After`` honoured, in seconds: a bigger hint is not worth blocking on."""

MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
"""4 MiB: a task object is about 1 KiB, so a bigger answer is not one and is not kept in memory."""

_CHUNK: Final = 64 * 1024

TASK_ID_PARAMS: Final = ("taskId", "task_id")
"""The query parameters that name the task a request reads, in the families' spellings."""

API_URLS_KEPT: Final = 256
"""How many API URLs (base URL, path and query) are kept built: a wait reads the same
URL over and over, and building one (yarl's query encoding, and what aiohttp works out
from a new URL object) costs about as much CPU as the rest of the SDK's own work on a
read."""


@functools.lru_cache(maxsize=API_URLS_KEPT)
def _api_url(base_url: str, path: str, query: tuple[tuple[str, str], ...]) -> URL:
    """``path`` under ``base_url``, with ``query``."""
    url = _path_url(base_url, path)
    return url.with_query(dict(query)) if query else url  # yarl is quicker with a dict


@functools.lru_cache(maxsize=64)
def _path_url(base_url: str, path: str) -> URL:
    """``path`` under ``base_url``, parsed once: a client reads a handful of paths."""
    return URL(f"{base_url}/{path.lstrip('/')}")


def _forget_request_headers(exc: aiohttp.ClientError) -> None:
    """Drop the key from the request headers some aiohttp errors keep (their ``repr`` shows them).

    The error stays chained to the SDK's own for debugging; only ``Authorization`` goes.
    """
    if isinstance(exc, aiohttp.ClientResponseError):
        info = exc.request_info
        headers = CIMultiDict(info.headers)
        headers.popall("Authorization", None)
        exc.request_info = aiohttp.RequestInfo(
            info.url, info.method, CIMultiDictProxy(headers), info.real_url
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


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The body, or its first ``MAX_ANSWER_BYTES + 1`` bytes if it is longer."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            break
    return bytes(body)


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
        max_connections: int | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self.base_url = base_url
        self.origin = URL(base_url).origin()
        self._base_path = URL(base_url).path.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_connections = max_connections
        self.budget = budget
        self._api_key = api_key
        self._session = session
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        self._connection_slots: asyncio.Semaphore | None = None
        self._slots_sized = False
        self._headers: Final = {
            "Authorization": api_key,
            "Accept": "application/json",
            "User-Agent": f"gptunnel-async/{version()}",
        }
        self._anonymous_headers: Final = {"User-Agent": self._headers["User-Agent"]}
        """For every other origin (the storage host): never the key."""

    @contextlib.asynccontextmanager
    async def exchange(
        self, method: str, url: URL, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request and its response; every request the SDK makes goes through here
        (API reads through :meth:`request`, which does the same without a generator).

        Each exchange first takes a slot, one per connection the session's connector
        allows. With many concurrent waits, requests queue here, outside their timeout,
        rather than in aiohttp's pool where the wait counts against it: there, a busy
        client timed out requests it had not even sent, and its retries fed the queue.
        """
        session = self._session()
        async with self._slots(session) or contextlib.nullcontext():
            on_api = url.origin() == self.origin
            response = await self._send(session, method, url, on_api, **options)
            async with response:
                yield response

    def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        on_api: bool,
        **options: Any,
    ) -> Awaitable[aiohttp.ClientResponse]:
        """Start one request: await it for the response, unread. ``on_api``: ``url`` is on
        ``base_url``'s origin.

        An API request keeps to the client's rate budget, if it has one. Without one
        this is a plain function rather than a coroutine: every coroutine between a read
        and the event loop costs CPU each time the read waits for the network.
        """
        if on_api and self.budget is not None:
            return self._send_within(self.budget, session, method, url, **options)
        return self._request(session, method, url, on_api, **options)

    async def _send_within(
        self,
        budget: RequestBudget,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        **options: Any,
    ) -> aiohttp.ClientResponse:
        """An API request started when the rate budget allows; a 429 slows every request."""
        started = await budget.pace()
        response = await self._request(session, method, url, True, **options)
        if response.status == 429:
            hint = parse_retry_after(response.headers.get("Retry-After"))
            budget.rate_limited(started, None if hint is None else min(hint, RETRY_AFTER_CAP))
        return response

    def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        on_api: bool,
        **options: Any,
    ) -> Awaitable[aiohttp.ClientResponse]:
        """aiohttp's request, not yet started.

        The key goes only to ``base_url``'s origin, and redirects and error statuses are
        left to the caller whatever a borrowed session's defaults say, so no redirect
        can carry the key and no status escapes as a bare aiohttp error.
        """
        return session.request(
            method,
            url,
            headers=self._headers if on_api else self._anonymous_headers,
            allow_redirects=False,
            raise_for_status=False,
            **options,
        )

    def _slots(self, session: aiohttp.ClientSession) -> asyncio.Semaphore | None:
        """As many slots as the client's ``max_connections`` and the session's connector
        allow connections (``None`` if both are unlimited)."""
        if not self._slots_sized:
            connector = session.connector
            limits = [connector.limit, connector.limit_per_host] if connector else []
            limits.append(self.max_connections or 0)
            if any(limits):
                self._connection_slots = asyncio.Semaphore(min(n for n in limits if n))
            self._slots_sized = True
        return self._connection_slots

    async def answer(self, response: aiohttp.ClientResponse) -> bytes:
        """The body of a 2xx answer, or the typed error for any other status.

        At most :data:`MAX_ANSWER_BYTES` are read: a bigger 2xx body raises
        :class:`ResponseDecodeError`, and an error's message comes from its start.
        """
        size, headers = response.content_length, response.headers
        if (
            size is not None
            and size <= MAX_ANSWER_BYTES
            and "Content-Encoding" not in headers
            and "Transfer-Encoding" not in headers
        ):  # the usual small, plain answer: aiohttp reads just the length it declares
            body = await response.read()
        else:
            body = await _read_capped(response)
        head = body[:MAX_ANSWER_BYTES]
        if not 200 <= response.status < 300:
            raise error_from_response(response.status, headers, head, secret=self._api_key)
        if len(body) > MAX_ANSWER_BYTES:
            raise ResponseDecodeError(
                f"the answer is over {MAX_ANSWER_BYTES} bytes, far more than any task object",
                status_code=response.status,
                body=excerpt(head[:_CHUNK], self._api_key),
            )
        return head

    def headers_for(self, url: URL) -> Mapping[str, str]:
        """Request headers for ``url``: with the key only on ``base_url``'s origin."""
        return self._headers if url.origin() == self.origin else self._anonymous_headers

    def redact(self, text: str) -> str:
        """``text`` with the API key masked."""
        return redact(text, self._api_key)

    def retrying(
        self,
        what: str,
        retry_if: Callable[[BaseException], bool] = is_transient,
        *,
        family: str = "download",
        task_id: str | None = None,
    ) -> tenacity.AsyncRetrying:
        """A fresh tenacity controller (they keep per-call state): backoff with Retry-After.

        ``what`` names the request, ``family`` its task family and ``task_id`` the task it
        reads, in the report each retry makes to the instrumentation hooks (the default
        one logs a WARNING).
        """
        from ._retrying import controller  # tenacity loads on the first retry, not at import

        return controller(self.max_retries, what, retry_if, family, task_id)

    async def request(
        self,
        method: str,
        path: str,
        decode: Decoder[T],
        *,
        query: tuple[tuple[str, str], ...] = (),
        json: Any = None,
        idempotent: bool = True,
    ) -> T:
        """Send one API request, retrying transient failures; return the 2xx answer decoded.

        ``query`` holds the URL's query parameters, each name once. ``decode`` runs
        inside each attempt, so an error a 2xx body carries (media's ``code``) is retried
        by the same rules as an HTTP status. A request that is not ``idempotent`` (one
        that creates a paid task) is retried only where the server surely did nothing, so
        a retry never starts a second task.
        """
        url = _api_url(self.base_url, path, query)
        retry_if = is_transient if idempotent else _safe_to_resend
        try:
            return await self._attempt(method, url, json, decode)
        except GPTunnelError as exc:
            if not retry_if(exc) or self.max_retries == 0:
                raise
            first_failure = exc
        # Most requests succeed at once and never pay for a retry controller. Failures
        # replay the first attempt's error into tenacity, which logs, backs off and
        # retries exactly as if it had made that attempt itself.
        replay = [first_failure]

        async def attempt(*args: Any) -> T:
            if replay:
                raise replay.pop()
            return await self._attempt(*args)

        what = f"{method} {url.path}"
        task_id = next((value for name, value in query if name in TASK_ID_PARAMS), None)
        controller = self.retrying(what, retry_if, family=family_of(path), task_id=task_id)
        result: T = await controller(attempt, method, url, json, decode)
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
        _forget_request_headers(exc)
        reason = self.redact(str(exc)) or type(exc).__name__
        return APIConnectionError(f"{what} failed: {reason}")

    def _attempt(self, method: str, url: URL, json: Any, decode: Decoder[T]) -> Awaitable[T]:
        """One attempt; reported to the instrumentation hooks if one listens to requests
        (a plain function, so an unobserved read costs no extra coroutine)."""
        if LISTENING.request:
            return self._observed_attempt(method, url, json, decode)
        return self._plain_attempt(method, url, json, decode)

    async def _observed_attempt(self, method: str, url: URL, json: Any, decode: Decoder[T]) -> T:
        """:meth:`_plain_attempt`, timed and reported to the hooks, whatever its outcome."""
        answered: list[int] = []  # the status of a 2xx answer, seen by ``decode``

        def noting_status(body: bytes, status_code: int, /, *, secret: str | None = None) -> T:
            answered.append(status_code)
            return decode(body, status_code, secret=secret)

        started_at, started = time.time(), time.monotonic()
        error: BaseException | None = None
        try:
            return await self._plain_attempt(method, url, json, noting_status)
        except BaseException as exc:
            error = exc
            raise
        finally:
            path = url.path
            emit_request(
                RequestDetails(
                    method=method,
                    path=path,
                    family=family_of(path[len(self._base_path) :]),
                    task_id=next(filter(None, map(url.query.get, TASK_ID_PARAMS)), None),
                    status_code=answered[-1] if answered else getattr(error, "status_code", None),
                    error=None if error is None else type(error).__name__,
                    started_at=started_at,
                    duration=time.monotonic() - started,
                )
            )

    async def _plain_attempt(
        self,
        method: str,
        url: URL,
        json: Any,
        decode: Decoder[T],
    ) -> T:
        # What ``exchange`` and ``wire_errors`` do, spelled out: this runs for every read.
        # A queued read waits on the semaphore itself, with no context manager's coroutine.
        session = self._session()
        slots = self._slots(session)
        if slots is not None:
            await slots.acquire()
        try:
            response = await self._send(  # ``url`` was built on ``base_url``
                session, method, url, True, json=json, timeout=self._client_timeout
            )
            async with response:
                status, body = response.status, await self.answer(response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wire_error(exc, f"{method} {url.path}") from exc
        finally:
            if slots is not None:
                slots.release()
        return decode(body, status, secret=self._api_key)
