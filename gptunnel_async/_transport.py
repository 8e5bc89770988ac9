"""The one request path: connection slot -> rate budget -> send -> wire errors -> capped read.

Every request the SDK makes (API reads, task creation, the balance, result downloads)
goes through :meth:`Transport.exchange`. What to send and what an answer means are
decided by the pure code in ``_sansio``; this module does the sending, the timeouts and
the retries (tenacity), and turns every failure on the wire into a typed
:class:`~gptunnel_async.errors.GPTunnelError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import io
import json
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
from aiohttp import http_exceptions
from multidict import CIMultiDictProxy
from yarl import URL

from . import _timing
from ._budget import RequestBudget
from ._in_process import InProcessOnly
from ._logging import mask_in_logs
from ._safe_errors import made_safe, without_frames
from ._sansio.requests import (
    ACCEPTED_ENCODINGS,
    UNDOABLE_CODINGS,
    Request,
    RequestBuilder,
    content_codings,
    plain_transfer,
)
from ._sansio.responses import MAX_ANSWER_BYTES, Decoder, check_answer
from ._sansio.retries import (
    honoured_retry_after,
    is_refused,
    is_transient,
    may_have_acted,
    parse_retry_after,
)
from ._sansio.text import SHORT_TEXT, excerpt, mask_for
from ._timing import Wakeup
from ._version import version
from .errors import (
    API_UNREACHED,
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    GPTunnelError,
    ResponseDecodeError,
    TLSError,
    UsageError,
)
from .instrumentation._hooks import LISTENING, RequestDetails, emit_request, family_of

if TYPE_CHECKING:
    pass

__all__ = ["Transport"]

T = TypeVar("T")
R = TypeVar("R")


_CHUNK: Final = 64 * 1024

_TLS_ERRORS: Final = (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)
"""aiohttp's TLS failures: a certificate that does not verify, a refused handshake."""

TASK_ID_PARAMS: Final = ("taskId", "task_id")
"""The query parameters that name the task a request reads, in the families' spellings."""

_CLOSED_UNDER: Final = (AssertionError, AttributeError, RuntimeError)
"""What aiohttp before 3.13 may raise inside itself (a bare assert, its connector gone)
when its session is closed in the middle of a request, rather than a ClientError."""

_UNDER_AIOHTTP: Final = (*_CLOSED_UNDER, ValueError)
"""What else may come out of aiohttp untyped: a closed session's errors (above), the
resolver's ``UnicodeError`` for a host name IDNA refuses (``_checks.http_url`` refuses
those up front; this is the backstop), and the ``ValueError`` of a request it will not
build as given (a borrowed session made with ``auth=``, which it will not combine with
the key's ``Authorization`` header); an ``AssertionError`` on a session still open is
such a refusal too (one made with ``base_url=``: older aiohttp, 3.10 among them,
asserts that every URL it is given is relative)."""

_CUT_SHORT: Final = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)
"""Under a TLS error, these mean the peer hung up mid-handshake: a disconnect, which heals."""

Answer = tuple[int, CIMultiDictProxy[str], bytes]
"""A read answer: its status, its headers and its (capped) body."""


def _is_tls_failure(exc: BaseException) -> bool:
    """A TLS failure that will not heal by itself (not a peer hanging up mid-handshake)."""
    if not isinstance(exc, _TLS_ERRORS):
        return False
    cause = getattr(exc, "os_error", None) or exc.__cause__
    return not isinstance(cause, _CUT_SHORT)


CONNECT_TIMEOUT: Final = 10.0
"""Seconds an API request's connection may take to open (the name's lookup, TCP, and TLS
if https; a wait for a free connection of a lent session's pool too), at most
half its ``timeout``: one that takes longer raises ``aiohttp.ConnectionTimeoutError``,
which says that nothing was sent. Under the request's whole ``timeout`` alone, a
connection that never opened would end as a plain ``TimeoutError``, as a server that
took the request and never answered does."""

ERROR_BODY_TIME: Final = 10.0
"""Seconds the body of an answer that is not 2xx may take, at most half the request's
``timeout``: its status says what it is, and a body that stalls (a proxy's page) must
not turn a 401 or a 429 into a retried timeout that never tells it."""

_NEVER_OPENED: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
"""aiohttp's errors of a connection that never opened: refused, unresolvable, or not
open within :data:`CONNECT_TIMEOUT`. No byte of the request was sent."""


_SHORT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""The errors of a socket this process could not make (too many open files, no memory
for buffers): aiohttp reports them as a connection to the host that failed."""


def _unreached(exc: BaseException, url: URL) -> bool:
    """Whether ``exc`` is a connection that could not be opened to ``url``'s host itself:
    refused, or a name that does not resolve. Not a proxy's failure (its refusal, or its
    own name not resolving, which aiohttp reports for the proxy's host), nor a TLS
    handshake cut short (a host was reached there), nor a socket this process could not
    make (:data:`_SHORT_OF_RESOURCES`: ``base_url`` is not at fault)."""
    refused_by = (aiohttp.ClientProxyConnectionError, aiohttp.ClientSSLError)
    if not isinstance(exc, aiohttp.ClientConnectorError) or isinstance(exc, refused_by):
        return False
    if exc.os_error.errno in _SHORT_OF_RESOURCES:
        return False
    return (exc.host, exc.port) == (url.raw_host, url.port)


def _safe_to_resend(exc: BaseException) -> bool:
    """For requests that start a task: retry only when the server surely did not act on
    it: a refusal before any work (429, 503, media's "heavy load"), or a connection
    that never opened."""
    return is_refused(exc) or (
        isinstance(exc, APIConnectionError)
        and is_transient(exc)
        and isinstance(exc.__cause__, _NEVER_OPENED)
    )


def _json(request: Request) -> io.BytesIO:
    """``request``'s body as JSON (as aiohttp's ``json=`` makes it), in a file object:
    aiohttp sends that in chunks, where it warns (``ResourceWarning``) that bytes over
    1 MiB may block the event loop, as a face swap of two photos sent inline is."""
    return io.BytesIO(json.dumps(request.json).encode())


MAY_HAVE_STARTED: Final = (
    "the task may have started: no API call finds it without its id, so check what you "
    "can (a webhook you passed, the balance, your GPTunnel account) before you create it "
    "again (each create is paid)"
)
"""What the error of a create after which the task may have started ends with."""


def _may_have_started(exc: BaseException) -> bool:
    """For a request that starts a paid task: whether the server may have started it
    though the request failed with ``exc``: its answer was no task object, or the
    failure came after the request may have reached it (a timeout, a lost connection,
    any 5xx but one that says it was not taken), as opposed to a refusal before any work
    or a connection never opened."""
    return (
        isinstance(exc, ResponseDecodeError)
        or may_have_acted(exc)
        or (is_transient(exc) and not _safe_to_resend(exc))
    )


_ENCODING_SLACK: Final = 1 << 20
"""Bytes of a gzip or deflate body as sent beyond what its decoded bytes can take, see
:func:`_most_encoded`."""


def _most_encoded(limit: int) -> int:
    """The most bytes a gzip or deflate body of at most ``limit`` bytes decoded may take
    as sent, with room to spare: deflate's stored blocks add 5 bytes to each 64 KiB of
    bytes that do not compress (a flush adds 5 more each), a gzip member's header and
    trailer at least 18. A longer body decodes to more than ``limit``, or is padded
    (empty blocks, empty members, long header fields) with next to nothing to decode:
    read on, such a body could be gigabytes for no byte that counts against ``limit``."""
    return limit + limit // 64 + _ENCODING_SLACK


_MAX_MEMBERS: Final = 1024
"""The most gzip members one body may hold, aiohttp's bound: each member needs a new
decompressor, and empty ones add no output for ``limit`` to stop."""


class _Inflater:
    """Undoes a gzip or deflate content coding. aiohttp is asked to leave every coding
    alone (see :meth:`Transport._sent`), so the SDK undoes the ones it asks for itself.

    A gzip body may be several members one after another (RFC 1952, ``cat a.gz b.gz``):
    each is decoded, up to :data:`_MAX_MEMBERS`. Bytes after the end that are not a
    gzip member, or any byte after a deflate stream's end, are an error rather than
    dropped. Stops after ``limit`` bytes of output in all (members together), so a small
    body cannot inflate into gigabytes.
    """

    def __init__(self, coding: str, limit: int) -> None:
        self._gzip = coding != "deflate"
        self._inflate: zlib._Decompress | None = None
        self._members = 0
        self._room = limit
        self._start = b""
        """A deflate body's first byte, while it is alone: its format needs two."""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``chunk``, in pieces of at most :data:`_CHUNK` bytes (a
        64 KiB read of a gzip bomb decodes to some 64 MiB: it is never held at once),
        at most ``limit + 1`` of them over the body (its reader stops past ``limit``);
        ``aiohttp.ClientPayloadError`` if it is corrupt or goes on after the body's end."""
        if self._inflate is None and not self._gzip and len(self._start) + len(chunk) < 2:
            self._start += chunk  # see _wbits
            return
        if self._start:
            chunk, self._start = self._start + chunk, b""
        while chunk and self._room >= 0:
            inflate = self._decompressor(chunk)
            yield from self._pieces(inflate, chunk)
            # After a member's end, the next one's start; else every byte was taken.
            chunk = inflate.unused_data if inflate.eof else b""

    def _pieces(self, inflate: zlib._Decompress, chunk: bytes) -> Iterator[bytes]:
        """What ``inflate`` makes of ``chunk``, a piece at a time, until it has taken every
        byte of it (or reached its stream's end, or ``limit``). A full piece may leave
        output inside zlib though every byte was taken: it is asked for until none is."""
        while self._room >= 0:
            size = min(_CHUNK, self._room + 1)
            try:
                data = inflate.decompress(chunk, size)
            except zlib.error as exc:
                raise self._corrupt(exc) from None
            self._room -= len(data)
            if data:
                yield data
            if len(data) < size or inflate.eof:
                return
            chunk = inflate.unconsumed_tail

    def finish(self) -> None:
        """At the end of the body: ``aiohttp.ClientPayloadError`` if the stream was cut.
        A body without a single byte is empty, as aiohttp reads it (an empty error page
        labelled ``gzip``), not a cut stream."""
        if self._start or (self._inflate is not None and not self._inflate.eof):
            raise aiohttp.ClientPayloadError("the compressed body ends before its end")

    def _decompressor(self, chunk: bytes) -> zlib._Decompress:
        """The decompressor for ``chunk``: the current one, or a new one for the body's
        start or for the gzip member after the last one's end."""
        if self._inflate is not None and not self._inflate.eof:
            return self._inflate
        if self._inflate is not None and not self._gzip:
            raise aiohttp.ClientPayloadError("the compressed body goes on after its end")
        self._members += 1
        if self._members > _MAX_MEMBERS:
            raise aiohttp.ClientPayloadError(
                f"the compressed body has more than {_MAX_MEMBERS} gzip members"
            )
        self._inflate = zlib.decompressobj(self._wbits(chunk))
        return self._inflate

    def _wbits(self, chunk: bytes) -> int:
        """zlib's format for the stream ``chunk`` starts (at least two bytes of a
        deflate one): "deflate" is meant as zlib's format, but some servers send it raw.
        A zlib stream starts with a two-byte header (RFC 1950: method 8, a window of at
        most 32 KiB, the two bytes a multiple of 31 as one number); the first byte's low
        nibble alone (aiohttp's test) is 8 in a raw stream that starts with a stored
        block whose padding bits are set (RFC 1951 3.2.4 has decoders ignore them)."""
        if self._gzip:
            return 16 + zlib.MAX_WBITS
        first = chunk[0]
        header = first & 0x0F == 8 and first >> 4 <= 7 and (first << 8 | chunk[1]) % 31 == 0
        return zlib.MAX_WBITS if header else -zlib.MAX_WBITS

    def _corrupt(self, exc: zlib.error) -> aiohttp.ClientPayloadError:
        if self._members > 1:
            return aiohttp.ClientPayloadError(
                f"the compressed body is corrupt: what follows gzip member "
                f"{self._members - 1} is not a valid gzip member ({exc})"
            )
        return aiohttp.ClientPayloadError(f"the compressed body is corrupt: {exc}")


class Transport(InProcessOnly):
    """Sends requests with the API key, which goes to ``base_url``'s origin only.

    Args:
        base_url: the API's root, without a trailing slash.
        api_key: the key.
        timeout: seconds one API request may take (a download: each read of the socket,
            and the wait for its answer's headers).
        max_retries: retries after the first attempt, transient failures only.
        session: returns the aiohttp session to use (the client's own or a borrowed one).
        max_connections: requests in flight at once; ``None``: what the session allows.
        budget: the client-wide rate of API requests, if any.
        wakeup: the client's pauses, which its ``close()`` ends: every request and every
            retry pause runs under it, so closing the client ends them with
            ``UsageError`` at once, on a borrowed session too.
    """

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
        wakeup: Wakeup | None = None,
    ) -> None:
        self.wakeup = wakeup or Wakeup()
        self.requests = RequestBuilder(base_url, api_key, f"gptunnel-async/{version()}")
        self.base_url = base_url
        self._base_path = URL(base_url).path.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_connections = max_connections
        self.budget = budget
        self._api_key = api_key
        mask_in_logs(self)  # a log line that quotes what another process stored, too
        self._session = session
        self._timeouts: Final = {
            # connect=, not sock_connect=: the name's lookup too (a DNS server that
            # does not answer), and a wait for a lent session's pooled connection.
            False: aiohttp.ClientTimeout(total=timeout, connect=min(CONNECT_TIMEOUT, timeout / 2)),
            True: aiohttp.ClientTimeout(connect=timeout, sock_read=timeout),
        }
        """By ``Request.streamed``: a whole API exchange, or each step of a download."""
        self._read_answer = self.read_answer
        """Bound once: a read queued for a connection holds no bound method of its own."""
        self._connection_slots: asyncio.Semaphore | None = None
        self._slots_sized = False

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    @property
    def secret(self) -> str:
        """The API key, for the checks that keep it out of what the SDK shows."""
        return self._api_key

    # -- the one path -------------------------------------------------------------------

    async def exchange(
        self,
        request: Request,
        read: Callable[[aiohttp.ClientResponse], Awaitable[R]],
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> R:
        """Send ``request`` once and return what ``read`` makes of its response.

        In order: a connection slot (with many concurrent waits, requests queue here,
        outside their timeout, rather than in aiohttp's pool where the queueing counts
        against it), the rate budget for API requests, the send itself (no redirects
        followed, no status raised, whatever a borrowed session's defaults say), then
        ``read``. Any failure of aiohttp or the socket on the way becomes
        :class:`APIConnectionError`, :class:`APITimeoutError` or :class:`TLSError`; the
        session closing under the request, :class:`UsageError`. ``session`` sends it
        instead of the client's own (a download's, see ``_destinations``); the
        connection slots stay the client's. The client's ``close()`` ends it with
        :class:`UsageError`, wherever it is (queued for a slot or the budget included).
        """
        sending = False  # once True, the request may have reached the server
        try:
            # Under the client's wakeup, in this frame (no coroutine around it): its close()
            # ends the request at once, with UsageError, on a borrowed session too.
            with self.wakeup.pause():
                own = self._session()
                slots = self._slots(own)
                session = session or own
                if slots is not None:
                    await slots.acquire()
                try:
                    started = await self._take_budget(request)
                    sending = True
                    async with await self._sent(session, request) as response:
                        await self._report_to_budget(started, response)
                        return await read(response)
                except (GPTunnelError, TimeoutError, aiohttp.ClientError, *_UNDER_AIOHTTP) as exc:
                    failure = self._failure(exc, request, session)
                except BaseException as exc:  # a cancellation (the caller's own timeout) and such
                    # Passed on as it is, but without aiohttp's frames: their locals hold the
                    # request's headers, key and all.
                    raise without_frames(exc)  # noqa: B904  (the same exception, not a new one)
                finally:
                    if slots is not None:
                        slots.release()
                try:
                    raise failure  # outside the handler: no unsafe exception is its context
                finally:
                    del failure  # else: failure -> traceback -> this frame -> failure, a cycle
        except UsageError as exc:  # the client or the session closed under the request
            raise self._in_context(exc, request, cut_off=sending)  # noqa: B904  (the same one)

    def _sent(
        self, session: aiohttp.ClientSession, request: Request
    ) -> Awaitable[aiohttp.ClientResponse]:
        """``request`` sent (no redirects followed, no status raised, whatever a borrowed
        session's defaults say): its response once the headers are in. A download, whose
        socket reads alone have a timeout, gets ``timeout`` for its headers too: a host
        that answers an interim ``1xx`` and then nothing held it forever, since aiohttp's
        read timeout does not run between the two (an API request's whole exchange has
        its timeout already)."""
        headers, body = request.headers, None
        if request.json is not None:
            headers, body = {**headers, "Content-Type": "application/json"}, _json(request)
        sending = session.request(
            request.method,
            request.url,
            headers=headers,
            data=body,
            allow_redirects=False,
            raise_for_status=False,
            timeout=self._timeouts[request.streamed],
            # Codings are undone by :meth:`chunks`, never by aiohttp: which header values
            # aiohttp decodes differs between its versions (3.10 leaves " br " alone,
            # later ones trim it; zstd since 3.12), so what it did could not be known.
            auto_decompress=False,
        )
        return _within(sending, self.timeout) if request.streamed else sending

    def _failure(
        self, exc: BaseException, request: Request, session: aiohttp.ClientSession
    ) -> BaseException:
        """What :meth:`exchange` raises for ``exc``, made safe to keep and render (no
        frames, no key: see ``_safe_errors``). A request to ``base_url``'s origin
        (``request.on_api``) whose own host could not be reached at all says that host
        is ``base_url``'s (:data:`~gptunnel_async.errors.API_UNREACHED`)."""
        what = request.label
        if isinstance(exc, GPTunnelError):  # from ``read``, whose frames hold the answer
            return made_safe(exc, self._api_key)
        if isinstance(exc, (TimeoutError, aiohttp.ClientError)):
            api_unreached = request.on_api and _unreached(exc, request.url)
            return self._wire_error(exc, what, unreached=api_unreached)
        if isinstance(exc, UnicodeError):
            unreached = f"; {API_UNREACHED}" if request.on_api else ""
            unresolvable = APIConnectionError(
                f"{self.shown(what)} failed: the host name cannot be looked up{unreached}"
            )
            unresolvable.__cause__ = made_safe(exc, self._api_key)
            return unresolvable
        if isinstance(exc, ValueError) or (isinstance(exc, AssertionError) and not session.closed):
            return self._refused(exc, what)
        if not session.closed:  # a bug, not a session closed under the request
            return exc
        error = UsageError(f"{self.shown(what)}: the session was closed during the request")
        error.__cause__ = made_safe(exc, self._api_key)
        return error

    def _refused(self, exc: ValueError | AssertionError, what: str) -> ConfigurationError:
        """The error of a request aiohttp would not build as the session's settings make
        it (not retried: it would refuse it again); ``exc`` made safe, as its cause."""
        reason = excerpt(str(exc), self._api_key, SHORT_TEXT) or type(exc).__name__
        error = ConfigurationError(
            f"{self.shown(what)} cannot be sent: aiohttp refused it ({reason}); a borrowed "
            "session's settings (auth=, or base_url=, which older aiohttp will not take "
            "beside an absolute URL) may be at odds with the request"
        )
        error.__cause__ = made_safe(exc, self._api_key)
        return error

    async def _take_budget(self, request: Request) -> float | None:
        """Wait until the rate budget lets an API request start; return that time, or
        ``None`` without a budget. The one place a request meets the budget."""
        if self.budget is None or not request.on_api:
            return None
        return await self.budget.acquire()

    async def _report_to_budget(
        self, started: float | None, response: aiohttp.ClientResponse
    ) -> None:
        """A 429 slows every request of the client down, for its ``Retry-After`` too."""
        if started is not None and self.budget is not None and response.status == 429:
            hint = parse_retry_after(response.headers.get("Retry-After"))
            await self.budget.rate_limited(started, honoured_retry_after(hint))

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

    def forget_loop(self) -> None:
        """Drop what belongs to the event loop the session was on: the client moved to
        another loop with a new session (the slots are sized again on the next request)."""
        self._connection_slots = None
        self._slots_sized = False

    def shown(self, what: str) -> str:
        """A request's label fit for an error text or a log line: the host and path of a
        result URL or a redirect target are server text, so masked and bounded too."""
        return excerpt(what, self._api_key, SHORT_TEXT)

    def _wire_error(
        self, exc: TimeoutError | aiohttp.ClientError, what: str, *, unreached: bool
    ) -> GPTunnelError:
        """The typed error for a failure on the wire while doing ``what``; ``exc`` is
        made safe and kept as its cause (no key, no frames). One whose connection to
        ``base_url``'s host could not be opened at all (``unreached``) says to check
        ``base_url``; a download's host is the storage's, named by the task."""
        tls = _is_tls_failure(exc)
        cause = made_safe(exc, self._api_key)
        what = self.shown(what)
        reason = _reason(exc, self._api_key)
        error: GPTunnelError
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            error = APITimeoutError(
                f"{what} failed: no connection opened in time; nothing was sent"
            )
        elif isinstance(exc, TimeoutError):
            error = APITimeoutError(f"{what} timed out after {self.timeout:g}s")
        elif tls:
            error = TLSError(f"{what} failed: TLS could not be set up: {reason}")
        elif unreached:
            error = APIConnectionError(f"{what} failed: {reason}; {API_UNREACHED}")
        else:
            error = APIConnectionError(f"{what} failed: {reason}")
        error.__cause__ = cause
        return error

    # -- reading ------------------------------------------------------------------------

    async def read_answer(self, response: aiohttp.ClientResponse) -> Answer:
        """An API answer: status, headers and at most ``MAX_ANSWER_BYTES + 1`` bytes of
        body, decompressed even if the session does not do it. The body of an answer
        that is not 2xx only adds detail to what its status says: one that cannot be
        read (cut, not the gzip it claims, in a coding the SDK cannot undo, or not sent
        in full within :data:`ERROR_BODY_TIME`) is what was read of it, not a failure.

        Raises:
            ResponseDecodeError: a 2xx body in a content coding the SDK cannot undo
                (see :meth:`chunks`).
        """
        body = bytearray()
        if not 200 <= response.status < 300:
            with contextlib.suppress(aiohttp.ClientPayloadError, TimeoutError, ResponseDecodeError):
                async with asyncio.timeout(min(ERROR_BODY_TIME, self.timeout / 2)):
                    await self._read_capped(response, body)
            return response.status, response.headers, bytes(body)
        size = response.content_length
        if (
            size is not None
            and size <= MAX_ANSWER_BYTES
            and "Content-Encoding" not in response.headers
        ):  # the usual small, plain answer: aiohttp reads the length it declares at once
            return response.status, response.headers, await response.read()
        await self._read_capped(response, body)
        return response.status, response.headers, bytes(body)

    async def _read_capped(self, response: aiohttp.ClientResponse, body: bytearray) -> None:
        """Add ``response``'s body to ``body``, decompressed, up to one byte over
        ``MAX_ANSWER_BYTES``; ``aiohttp.ClientPayloadError`` if it is cut or corrupt."""
        async for chunk in self.chunks(response, MAX_ANSWER_BYTES):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                return

    async def raise_for_download_status(self, response: aiohttp.ClientResponse) -> None:
        """Raise the typed error of a result download's response that is not 2xx, its
        message from the start of its body (a 403, 404 or 410 says that the result has
        likely expired)."""
        if not 200 <= response.status < 300:
            status, headers, body = await self.read_answer(response)
            check_answer(status, headers, body, secret=self._api_key, result_file=True)

    def chunks(
        self,
        response: aiohttp.ClientResponse,
        limit: int,
        *,
        error: type[GPTunnelError] = ResponseDecodeError,
    ) -> AsyncIterator[bytes]:
        """The body in chunks, decoded (to at most ``limit + 1`` bytes) when its
        ``Content-Encoding`` is one coding the SDK asks for (``gzip``, its old name
        ``x-gzip``, or ``deflate``, beside any ``identity``, over every header line).

        Raises:
            GPTunnelError: of class ``error``, at once (before a byte is read), for any
                other coding (``br``, ``zstd``, ``compress``, a stack such as ``gzip,
                gzip``), or a ``Transfer-Encoding`` other than ``chunked`` or
                ``identity`` (``gzip, chunked``: aiohttp undoes the framing alone, see
                ``plain_transfer``): its bytes are not what was sent, and read as they
                are they would be saved or decoded as if they were. Also, at once or as
                it is read, for a coded body over :func:`_most_encoded` bytes as sent
                (its ``Content-Length``, or what came): the caps count decoded bytes,
                and a body padded with next to nothing to decode was read until the
                timeout.
        """
        transfer = response.headers.getall("Transfer-Encoding", ())
        if not plain_transfer(transfer):
            raise _refused_body(
                response,
                error,
                f"the answer's Transfer-Encoding '{self._quoted(transfer)}' is not one the "
                "SDK can undo (it reads chunked alone, and asks for no other): its body is "
                "not what was sent, so it is not read",
            )
        lines = response.headers.getall("Content-Encoding", [])
        codings = content_codings(lines)
        if not codings:
            return response.content.iter_chunked(_CHUNK)
        if len(codings) != 1 or codings[0] not in UNDOABLE_CODINGS:
            raise _refused_body(
                response,
                error,
                f"the answer's Content-Encoding '{self._quoted(lines)}' is not one the SDK "
                f"can undo (it asks for {ACCEPTED_ENCODINGS}, one coding at a time): its body "
                "is not what was sent, so it is not read",
            )
        most = _most_encoded(limit)
        too_long = functools.partial(
            _refused_body,
            response,
            error,
            f"the answer's {codings[0]} body is over {most} bytes as sent, more than a body "
            f"of at most {limit} bytes decoded takes: it is not read on",
        )
        if (response.content_length or 0) > most:
            raise too_long()
        return _inflated(response, _Inflater(codings[0], limit), most, too_long)

    def _quoted(self, lines: Sequence[str]) -> str:
        """Header lines as an error quotes them: the key masked, then every character
        but printable ASCII escaped (a refused ``gzip\\xa0`` or ``gzip\\x0b`` must not read
        as ``gzip``, as it did with its blank folded away), bounded."""
        mask = mask_for(self._api_key)
        return excerpt(", ".join(lines), None, masked=lambda text: ascii(mask(text))[1:-1])

    # -- API requests ---------------------------------------------------------------------

    async def pause(self, seconds: float) -> None:
        """Pause ``seconds`` between attempts; the client's ``close()`` ends the pause
        with ``UsageError`` (a ``Retry-After: 60`` is not waited out)."""
        with self.wakeup.pause():
            await _timing.sleep(seconds)

    async def retried(
        self,
        what: str,
        attempt: Callable[[], Awaitable[R]],
        retry_if: Callable[[BaseException], bool] = is_transient,
        *,
        family: str = "download",
        task_id: str | None = None,
    ) -> R:
        """``attempt()``, retried by tenacity (backoff with Retry-After) up to the client's
        ``max_retries`` when ``retry_if`` says an error is worth it.

        ``what`` names the request, as :meth:`shown` makes it fit for a log line (the
        callers mask it once), ``family`` its task family and ``task_id`` the task it
        reads, in the report each retry makes to the instrumentation hooks (the default
        one logs a WARNING).
        """
        from ._retrying import retried  # tenacity loads on the first retry, not at import

        try:
            return await retried(
                attempt,
                sleep=self.pause,
                max_retries=self.max_retries,
                what=what,
                retry_if=retry_if,
                family=family,
                task_id=task_id,
            )
        except GPTunnelError as exc:
            # tenacity's frames keep the last outcome, which holds this very error: a
            # reference cycle through its traceback, which starts here instead.
            raise without_frames(exc)  # noqa: B904  (its chain stays as it was)

    async def request(
        self,
        method: str,
        path: str,
        decode: Decoder[T],
        *,
        query: tuple[tuple[str, str], ...] = (),
        json: Any = None,
        idempotent: bool = True,
        secret: str | None = None,
    ) -> T:
        """Build and :meth:`send` one API request (see ``RequestBuilder.api``)."""
        request = self.requests.api(method, path, query=query, json=json, idempotent=idempotent)
        return await self.send(request, decode, secret=secret)

    async def send(self, request: Request, decode: Decoder[T], *, secret: str | None = None) -> T:
        """Send an API request, retrying transient failures; return the 2xx answer decoded.

        ``decode`` runs inside each attempt, so an error a 2xx body carries (media's
        ``code``) is retried by the same rules as an HTTP status. A request that is not
        ``idempotent`` (one that starts a paid task) is retried only where the server
        surely did nothing, so a retry never starts a second task.

        ``secret``, another secret the request carries (a webhook's token), is masked like
        the key in every error of every attempt, before a retry reports it (the WARNING
        line, the instrumentation hooks) and before it is raised.

        An error leaves with its traceback starting here: the frames below held the key
        (to mask it) and the answer (which may echo it) as locals.
        """
        retry_if = is_transient if request.idempotent else _safe_to_resend
        try:
            if LISTENING.request:
                return await self._observed_attempt(request, decode)
            # The first attempt in this frame: each of thousands of reads queued for a
            # connection holds one coroutine frame less (5 % of a wait's peak memory).
            return self._decoded(*await self.exchange(request, self._read_answer), decode)
        except GPTunnelError as exc:
            _hide(exc, secret)
            if not retry_if(exc) or self.max_retries == 0:
                raise without_frames(self._in_context(exc, request))  # noqa: B904
            replay = [exc]
        try:
            return await self._retried_after(request, decode, retry_if, replay, secret)
        except GPTunnelError as exc:  # a create retried after a 503, then a 500, say
            raise without_frames(self._in_context(exc, request))  # noqa: B904

    async def _retried_after(
        self,
        request: Request,
        decode: Decoder[T],
        retry_if: Callable[[BaseException], bool],
        replay: list[GPTunnelError],
        secret: str | None,
    ) -> T:
        """Retry ``request`` after its first attempt failed with the error in ``replay``.

        Most requests succeed at once and never pay for a retry controller (about a
        fifth of a read's CPU, see performance.md). The failure is replayed into
        tenacity, which logs, backs off and retries as if it had made that attempt.
        """

        async def attempt() -> T:
            if replay:
                raise replay.pop()
            try:
                return await self._attempt(request, decode)
            except GPTunnelError as exc:
                raise _hide(exc, secret)  # noqa: B904  (the same exception, masked in place)

        family, task_id = self._about(request)
        what = self.shown(request.label)  # only a failed request gets here
        return await self.retried(what, attempt, retry_if, family=family, task_id=task_id)

    def _in_context(
        self, exc: GPTunnelError, request: Request, *, cut_off: bool = False
    ) -> GPTunnelError:
        """``exc``, and for a create after which the server may have started the task
        (:func:`_may_have_started`, or ``cut_off``: the request was cut off by a close
        after it may have reached the server), the request and what that means, added to
        its text in place (its class and attributes stay)."""
        if request.idempotent or not (cut_off or _may_have_started(exc)):
            return exc
        text = str(exc.args[0]) if exc.args else type(exc).__name__
        if text.endswith(MAY_HAVE_STARTED):  # the server's own text ends so: said already
            return exc
        label = self.shown(request.label)
        if label not in text:
            text = f"{label}: {text}"
        exc.args = (f"{text}; {MAY_HAVE_STARTED}", *exc.args[1:])
        return exc

    def _attempt(self, request: Request, decode: Decoder[T]) -> Awaitable[T]:
        """One attempt; reported to the instrumentation hooks if one listens to requests
        (a plain function, so an unobserved read costs no extra coroutine)."""
        if LISTENING.request:
            return self._observed_attempt(request, decode)
        return self._plain_attempt(request, decode)

    async def _plain_attempt(self, request: Request, decode: Decoder[T]) -> T:
        return self._decoded(*await self.exchange(request, self._read_answer), decode)

    def decode_delivered(self, body: bytes, decode: Decoder[T]) -> T:
        """A task object that reached us another way (a webhook delivery), decoded as a
        2xx answer is: with the key masked in everything made from it."""
        return decode(body, 200, secret=self._api_key)

    def _decoded(
        self, status: int, headers: CIMultiDictProxy[str], body: bytes, decode: Decoder[T]
    ) -> T:
        body = check_answer(status, headers, body, secret=self._api_key)
        return decode(body, status, secret=self._api_key)

    async def _observed_attempt(self, request: Request, decode: Decoder[T]) -> T:
        """:meth:`_plain_attempt`, timed and reported to the hooks whatever its outcome."""
        started_at, started = time.time(), time.monotonic()
        status: int | None = None
        error: BaseException | None = None
        try:
            answer = await self.exchange(request, self._read_answer)
            status = answer[0]
            return self._decoded(*answer, decode)
        except BaseException as exc:
            error = exc
            raise
        finally:
            family, task_id = self._about(request)
            emit_request(
                RequestDetails(
                    method=request.method,
                    path=request.url.path,
                    family=family,
                    task_id=task_id,
                    status_code=getattr(error, "status_code", None) or status,
                    error=None if error is None else type(error).__name__,
                    started_at=started_at,
                    duration=time.monotonic() - started,
                )
            )

    def _about(self, request: Request) -> tuple[str, str | None]:
        """The task family of an API request, and the task it reads (if any)."""
        family = family_of(request.url.path[len(self._base_path) :])
        return family, next(filter(None, map(request.url.query.get, TASK_ID_PARAMS)), None)


def _reason(exc: BaseException, secret: str) -> str:
    """Why ``exc`` failed, for an error's text: its own words, masked and bounded. An
    answer aiohttp could not parse is said to be no valid HTTP, with its parser's words
    if any (they came as ``0, message=''`` from 3.10's parser, as ``400, message=...``
    from later ones, a status no host sent). aiohttp's response errors end with the
    whole URL, query and all, which for a result download may be a signed link (its
    signature a credential): it is left out."""
    if isinstance(exc, aiohttp.ClientResponseError):
        if not exc.status and not exc.message:
            return "the answer is not valid HTTP"
        if isinstance(exc.__cause__, http_exceptions.HttpProcessingError):
            # Its parser's refusal: the status is the parser's code (400), not the host's.
            words = " ".join(str(exc.__cause__.message).split())
            return excerpt(f"the answer is not valid HTTP ({words})", secret, SHORT_TEXT)
        return excerpt(f"{exc.status}, message={exc.message!r}", secret, SHORT_TEXT)
    return excerpt(str(exc), secret, SHORT_TEXT) or type(exc).__name__


def _hide(exc: GPTunnelError, secret: str | None) -> GPTunnelError:
    """``exc`` with ``secret`` (if any) masked in place in it and its chain."""
    if secret:
        made_safe(exc, secret)
    return exc


async def _within(awaitable: Awaitable[R], seconds: float) -> R:
    """``await awaitable``, for at most ``seconds`` (``TimeoutError`` after that)."""
    async with asyncio.timeout(seconds):
        return await awaitable


def _refused_body(
    response: aiohttp.ClientResponse, error: type[GPTunnelError], message: str
) -> GPTunnelError:
    """The error of class ``error`` that refuses ``response``'s body (a
    ``ResponseDecodeError`` carries its status)."""
    if error is ResponseDecodeError:
        return ResponseDecodeError(message, status_code=response.status)
    return error(message)


async def _inflated(
    response: aiohttp.ClientResponse,
    inflater: _Inflater,
    most: int,
    too_long: Callable[[], GPTunnelError],
) -> AsyncIterator[bytes]:
    """``response``'s body through ``inflater``; ``too_long()`` is raised once more than
    ``most`` bytes of it have come as sent (see :func:`_most_encoded`)."""
    taken = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        taken += len(chunk)
        if taken > most:
            raise too_long()
        for piece in inflater.feed(chunk):
            yield piece
    inflater.finish()
