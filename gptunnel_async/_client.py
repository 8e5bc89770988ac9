"""``GPTunnelClient``: configuration, the aiohttp session's lifetime, and the endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import warnings
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypedDict

import aiohttp
from yarl import URL

from . import _download
from ._async_only import AsyncWithOnly
from ._budget import InProcessBudget, RequestBudget
from ._checks import (
    count,
    describe,
    http_url,
    instance_of,
    missing_methods,
    optional,
    seconds_within_a_day,
    text,
)
from ._destinations import Destinations
from ._in_process import InProcessOnly
from ._logging import logger
from ._polling import PollPolicy, ProgressCallback, TaskWaiter
from ._safe_errors import made_safe, secret_arguments
from ._sansio.addresses import base_url_is_private
from ._sansio.responses import decode_balance
from ._sansio.text import MASK, mask_for
from ._sentinel import NOT_GIVEN, NotGiven
from ._timing import Wakeup
from ._transport import Transport
from .errors import ConfigurationError, GPTunnelError, UsageError
from .families import BgRemover, FaceSwap, Media, Midjourney
from .models import Balance, MediaTask, Task

__all__ = ["DEFAULT_BASE_URL", "GPTunnelClient"]

DEFAULT_BASE_URL: Final = "https://gptunnel.ru/v1"
_HEADER_VALUE: Final = re.compile(r"[!-~]+(?: +[!-~]+)*")
"""Visible ASCII, inner spaces allowed: what an ``Authorization`` value can carry unaltered."""


class ClientOptions(TypedDict, total=False):
    """[GPTunnelClient][gptunnel_async.GPTunnelClient]'s arguments, for a call that passes
    them on (``FakeGPTunnel.client(**options)``) with each name and type checked."""

    api_key: str | None
    base_url: str | None
    timeout: float
    max_retries: int
    session: aiohttp.ClientSession | None
    poll_policy: PollPolicy | None
    max_connections: int | None
    requests_per_second: float | None
    budget: RequestBudget | None
    allow_private_result_urls: bool


def _budget(
    requests_per_second: float | None, budget: RequestBudget | None
) -> RequestBudget | None:
    """The client's budget: the one given, or an in-process one for ``requests_per_second``."""
    if budget is None:
        return None if requests_per_second is None else InProcessBudget(requests_per_second)
    if requests_per_second is not None:
        raise ConfigurationError("give requests_per_second or budget, not both")
    # Its methods looked up as attributes, not by isinstance against the protocol: from
    # Python 3.12 that ignores what a class provides through __getattr__ (a wrapper).
    if missing_methods(budget, ("acquire", "rate_limited", "current_rate")):
        raise ConfigurationError(
            f"budget must be a RequestBudget (acquire, rate_limited, current_rate), got {budget!r}"
        )
    return budget


def usable_api_key(key: str) -> bool:
    """Whether ``key`` can go out as the ``Authorization`` header: non-empty printable
    ASCII, no surrounding whitespace (the client's check, and the emulator's)."""
    return _HEADER_VALUE.fullmatch(key) is not None


def _api_key(value: str | None) -> str:
    key = value if value is not None else os.environ.get("GPTUNNEL_API_KEY")
    if key is None or (isinstance(key, str) and not key):
        raise ConfigurationError(
            "no API key: pass api_key=... or set the GPTUNNEL_API_KEY environment variable"
        )
    if not usable_api_key(text("api_key", key)):
        raise ConfigurationError(
            "the API key must be printable ASCII without surrounding whitespace; it contains "
            "control, non-ASCII or whitespace characters (a newline from a file?)"
        )
    if refusal := _wrapped_key(key):
        raise ConfigurationError(refusal)
    return key


def _wrapped_key(key: str) -> str | None:
    """Why ``key`` is a key in a wrapping GPTunnel does not take, never quoting it; or
    ``None``. GPTunnel reads ``Authorization: <key>``, the bare key: a ``Bearer ``
    prefix (what other APIs ask for) or quotes kept from an env file (``KEY="..."``
    read by a tool that keeps them) would make every request a 401."""
    if key[:7].lower() == "bearer ":
        return (
            "the API key starts with 'Bearer ': GPTunnel takes the bare key "
            "(Authorization: <key>), and the SDK sends it so; give the key without the prefix"
        )
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        return (
            "the API key is wrapped in quotes (an env file's, kept by the tool that read "
            "it?); give the key without them"
        )
    return None


def _base_url(value: str | None, key: str) -> str:
    """``value`` (else ``$GPTUNNEL_BASE_URL``, else GPTunnel's) checked; an error names
    the variable if the URL came from it, says what is likely wrong (quotes, no scheme:
    :func:`_base_url_fix`), and quotes it with ``key`` masked (a URL refused for its
    scheme may hold it in its path). Spaces and control characters around it are
    dropped, as a URL parser does (WHATWG's): an env file's trailing space was kept as
    ``/v1%20``, every request then a 404."""
    name, raw = "base_url", value
    if raw is None:
        raw = os.environ.get("GPTUNNEL_BASE_URL") or DEFAULT_BASE_URL
        name = "base_url (from GPTUNNEL_BASE_URL)" if raw != DEFAULT_BASE_URL else name
    if isinstance(raw, str):
        raw = raw.strip(_C0_AND_SPACE)
    try:
        return _usable_base_url(raw, name)
    except ConfigurationError as exc:
        refusal = mask_for(key)(f"{exc}{_base_url_fix(raw, key)}")
    raise ConfigurationError(refusal)  # out here: the refusal quoting the key is no context


_C0_AND_SPACE: Final = "".join(map(chr, range(0x21)))
"""What a URL parser drops around a URL: the C0 control characters and the space."""


def _base_url_fix(raw: object, key: str) -> str:
    """What to change in a refused ``base_url``, for its error: a blank one left out,
    the API key given in its place, the quotes of an env file kept around it, or a
    missing ``http://``/``https://``; ``""`` if none of these."""
    if not isinstance(raw, str):
        return ""
    text = raw.strip()
    bare = _unquoted(text)
    if not bare.strip():
        return f": it is blank; leave it out (and GPTUNNEL_BASE_URL unset) for {DEFAULT_BASE_URL}"
    if key and mask_for(key)(bare.strip()) == MASK:
        return f": it is the API key, not the API's URL (GPTunnel's is {DEFAULT_BASE_URL})"
    if bare != text:
        return (
            ": it is wrapped in quotes (an env file's, kept by the tool that read it?); "
            "give it without them"
        )
    if "://" not in text and not text.lower().startswith(("http:", "https:")):
        return ": it needs its scheme in front, https:// (or http:// for a local server)"
    return ""


def _unquoted(text: str) -> str:
    """``text`` without the pair of quotes around it, if it has one."""
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
    return text[1:-1] if quoted else text


def _usable_base_url(raw: str, name: str) -> str:
    url = http_url(name, raw)
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigurationError(
            f"{name} must not carry a query, fragment or credentials, got "
            f"{url.with_user(None).with_query(None).with_fragment(None)!s}"
        )
    return str(url).rstrip("/")


def _connections(name: str, value: object) -> int:
    return count(name, value, 1)


def _closed() -> UsageError:
    return UsageError("this GPTunnelClient is closed; create a new one")


class GPTunnelClient(AsyncWithOnly, InProcessOnly):
    """An async client for GPTunnel's task API.

    Use it as ``async with GPTunnelClient() as client:``, or call ``close()``. One
    client serves a whole application: its connections are pooled and reused.

    Each task family has its calls on an attribute: ``client.faceswap``
    ([FaceSwap][gptunnel_async.families.FaceSwap]), ``client.bgremover``,
    ``client.midjourney`` and ``client.media``, each with ``result``,
    ``wait_for_result``, ``as_completed`` and ``wait_many``, and their create calls.
    The client's own ``get_result``, ``wait_for_result``, ``as_completed`` and
    ``wait_many`` are the face swap's (GPTunnel's first task family).

    Args:
        api_key: the organisation's key; defaults to ``GPTUNNEL_API_KEY``.
        base_url: defaults to ``GPTUNNEL_BASE_URL``, else ``https://gptunnel.ru/v1``.
            The key is sent to this origin and nowhere else.
        timeout: seconds one HTTP request may take (> 0, at most a day); its
            connection has 10 s, or half of it if that is less, to open (one that does
            not sent nothing: it is retried, a create's too).
        max_retries: retries after the first attempt, for transient failures only.
        session: an ``aiohttp.ClientSession`` to borrow; the client never closes it.
        poll_policy: the default [PollPolicy][] of ``wait_for_result``.
        max_connections: requests in flight at once, shared by every call and wait;
            by default as many as the session's pool allows (100 for the client's own).
        requests_per_second: if set, API requests start ``1 / rate`` apart (no second
            holds more than ``rate + 1``), client-wide, and a 429 slows the whole
            client down until it recovers: the shorthand for
            ``budget=InProcessBudget(requests_per_second)``.
        budget: the [RequestBudget][gptunnel_async.fleet.RequestBudget] every API
            request starts from, e.g. a
            [RedisBudget][gptunnel_async.fleet.RedisBudget] shared by every process
            of a fleet. Not together with ``requests_per_second``.
        allow_private_result_urls: let ``download_result`` fetch from loopback,
            private, link-local and other non-public addresses. By default they are
            refused (a spoofed result URL must not make a service fetch its own internal
            endpoints), unless ``base_url`` is itself such an address (an emulator):
            checked where host names are resolved, so a download then goes through a
            connection pool of its own, not through ``session``.

    Raises:
        ConfigurationError: no key at all, a key that is not text (str) or not
            printable ASCII, a base URL that is not an absolute http(s) URL, or a bad
            option (a ``timeout`` over a day among them).
    """

    @secret_arguments  # its errors leave without the frames that held the key
    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        session: aiohttp.ClientSession | None = None,
        poll_policy: PollPolicy | None = None,
        max_connections: int | None = None,
        requests_per_second: float | None = None,
        budget: RequestBudget | None = None,
        allow_private_result_urls: bool = False,
    ) -> None:
        key = _api_key(api_key)
        root = _base_url(base_url, key)
        seconds = seconds_within_a_day("timeout", timeout)
        retries = count("max_retries", max_retries, 0)
        connections = optional(_connections, "max_connections", max_connections)
        optional(instance_of(aiohttp.ClientSession), "session", session)
        optional(instance_of(PollPolicy), "poll_policy", poll_policy)
        budget = _budget(requests_per_second, budget)
        private = instance_of(bool)("allow_private_result_urls", allow_private_result_urls)
        self._destinations = Destinations(
            allow_private=private or base_url_is_private(root), lent=session
        )
        self.poll_policy = poll_policy or PollPolicy()
        """The [PollPolicy][] that waits use unless they are given another."""
        self._session = session
        self._session_loop: object = None
        """The event loop the session belongs to, once it has been used."""
        self._closing: set[asyncio.Future[None]] = set()
        """Sessions of finished loops being closed (held until they are)."""
        self._owns_session = session is None
        self._closed = False
        self._pid = os.getpid()
        self._session_pid: int | None = None  # the process whose session it is
        """The process the client was made in: a forked child inherits it, sockets and all."""
        self._wakeup = Wakeup()
        """The pauses of this client's waits: ``close()`` ends them."""
        self._transport = Transport(
            base_url=root,
            api_key=key,
            timeout=seconds,
            max_retries=retries,
            session=self._get_session,
            max_connections=connections,
            budget=budget,
            wakeup=self._wakeup,
        )
        self.faceswap = FaceSwap(self._transport, self._poll_policy, self._wakeup)
        """Face swaps: ``create``, ``result``, ``wait_for_result``, ``swap``."""
        self.bgremover = BgRemover(self._transport, self._poll_policy, self._wakeup)
        """Background removal: ``result``, ``wait_for_result``; start one with
        ``create_task("bgremover/create", body)`` (its body is not documented)."""
        self.midjourney = Midjourney(self._transport, self._poll_policy, self._wakeup)
        """Midjourney: ``imagine``, ``upsample``, ``variation``, ``inpaint``, ``result``,
        ``wait_for_result``, ``imagine_and_wait``, and ``create_task`` for the endpoints
        the docs list without describing (``outpaint``, ``pan``, ``upscale``, ``reroll``)."""
        self.media = Media(self._transport, self._poll_policy, self._wakeup)
        """Media generation ([MediaTask][gptunnel_async.MediaTask]): ``create``, ``result``,
        ``wait_for_result``, ``generate``."""
        self.as_completed = self.faceswap.as_completed
        """Wait for many face-swap tasks, yielding each as it finishes (see
        [AsCompleted][gptunnel_async.AsCompleted]); every family has its own, e.g.
        ``client.media.as_completed``."""
        self.wait_many = self.faceswap.wait_many
        """Wait for many face-swap tasks; return them in the order given. Every family
        has its own, e.g. ``client.media.wait_many``."""

    @property
    def base_url(self) -> str:
        """The API root every request goes to."""
        return self._transport.base_url

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called; a closed client sends nothing."""
        return self._closed

    def __repr__(self) -> str:
        # Total, even for a client whose __init__ failed half-way (a traceback's locals).
        transport = getattr(self, "_transport", None)
        return f"GPTunnelClient(base_url={getattr(transport, 'base_url', None)!r})"

    def _poll_policy(self) -> PollPolicy:
        return self.poll_policy

    def _get_session(self) -> aiohttp.ClientSession:
        """The session for a request on the running event loop.

        A client made outside any loop may be used from one loop after another (a
        command line, a notebook, a test suite calling ``asyncio.run`` again and
        again): once the loop its own session belongs to has stopped, it opens a new
        one on the running loop. Two loops running at once cannot share one.
        """
        if self._closed:
            raise _closed()
        session = self._session
        if session is not None and self._session_loop is asyncio.get_running_loop():
            if session.closed:
                raise UsageError("the aiohttp session lent to this GPTunnelClient is closed")
            return session
        return self._session_on_this_loop()

    def _session_on_this_loop(self) -> aiohttp.ClientSession:
        """A session on the running loop: the one there is, or a new one if the client
        has none yet or its own belongs to a loop that is no longer running."""
        loop = asyncio.get_running_loop()
        if self._session is not None:
            # A borrowed session belongs to the loop aiohttp bound it to (no public name).
            self._session_loop = self._session_loop or getattr(self._session, "_loop", loop)
            if self._session_loop is not loop:
                self._leave_loop(self._session, self._session_loop)
        if self._session is None:
            limit = self._transport.max_connections or 100  # aiohttp's own default
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
            self._session_pid = os.getpid()
        self._session_loop = loop
        return self._get_session()

    def _leave_loop(self, session: aiohttp.ClientSession, old: object) -> None:
        """Give up the session of a loop that is no longer running, for the running one."""
        if os.getpid() != self._pid:  # a forked child: the loop it sees running is a copy
            raise UsageError(
                "this GPTunnelClient was made in another process (this one was forked from "
                "it) and shares its connections; make a client in each process, after the fork"
            )
        if isinstance(old, asyncio.AbstractEventLoop) and old.is_running():
            raise UsageError(
                "this GPTunnelClient is in use on another running event loop; "
                "make one client per event loop"
            )
        if not self._owns_session:
            raise UsageError(
                "the aiohttp session lent to this GPTunnelClient belongs to an event loop "
                "that is no longer running"
            )
        self._session = None
        self._transport.forget_loop()
        # Its loop is gone: nothing can be sent on its connections any more. Closing it
        # here only marks it closed (so aiohttp does not report it unclosed).
        closing = asyncio.ensure_future(session.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the session the client opened (never a borrowed one). Safe to call twice."""
        self._closed = True
        self._wakeup.interrupt(_closed)
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def __del__(self) -> None:
        # aiohttp reports its session too, but names no owner, and a bot has several.
        # As aiohttp does: a ResourceWarning (shown under -X dev, -W default, pytest)
        # and an ERROR line, which shows without either.
        session = getattr(self, "_session", None)
        if session is None or session.closed or not getattr(self, "_owns_session", False):
            return
        if getattr(self, "_session_pid", None) != os.getpid():  # a forked child's copy
            return  # of the parent's session, which the parent closes
        unclosed = (
            f"unclosed {self!r}: use `async with GPTunnelClient(...) as client:` or "
            "`await client.close()` before its event loop ends"
        )
        with contextlib.suppress(Exception):  # at interpreter exit logging may be gone
            logger.error("%s", unclosed)
        warnings.warn(unclosed, ResourceWarning, stacklevel=1, source=self)  # may raise

    async def __aenter__(self) -> Self:
        if self._closed:
            raise UsageError("this GPTunnelClient is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def get_result(self, task_id: str) -> Task:
        """Read a face-swap task's state once: the same as ``client.faceswap.result``.

        Args:
            task_id: the task to read.

        Returns:
            The task as it is now.

        Raises:
            GPTunnelError: the errors that
                [faceswap.result][gptunnel_async.families.FaceSwap.result] raises.
        """
        return await self.faceswap.result(task_id)

    def wait_for_result(
        self,
        task_id: str,
        *,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[Task] | None = None,
    ) -> TaskWaiter[Task]:
        """Wait for a face-swap task: the same as ``client.faceswap.wait_for_result``.

        Args:
            task_id: the task to wait for.
            policy: pacing and deadline; defaults to the client's ``poll_policy``.
            timeout: overrides the policy's deadline, in seconds; ``None`` for none.
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            A [TaskWaiter][]: await it for the done [Task][], or iterate it
            for the [ProgressEvent][] of each change. Awaiting or iterating it raises
            ``TaskFailedError`` when the task fails, ``WaitTimeoutError`` when the
            deadline passes, and the ``APIError`` of a 400, 401, 402, 403 or 404
            ([TaskWaiter][] lists them all).

        Raises:
            ConfigurationError: ``task_id`` is empty, blank or over 256 characters, or
                ``policy`` or ``on_progress`` is not one (a callback of no argument).
        """
        return self.faceswap.wait_for_result(
            task_id, policy=policy, timeout=timeout, on_progress=on_progress
        )

    async def balance(self, *, use_wallet_balance: bool = False) -> Balance:
        """The organisation's balance and credit limit (``GET /balance``).

        Args:
            use_wallet_balance: read the personal wallet rather than the organisation's.

        Returns:
            The balance and credit limit.

        Raises:
            ConfigurationError: ``use_wallet_balance`` is not a bool.
            AuthenticationError: the key was refused.
            APIError: any other error status, after the retries for transient ones.
            APIConnectionError: the network failed, after the retries.
        """
        wallet = instance_of(bool)("use_wallet_balance", use_wallet_balance)
        query = (("useWalletBalance", "true"),) if wallet else ()
        return await self._transport.request("GET", "balance", decode_balance, query=query)

    async def download_result(
        self,
        task_or_url: Task | MediaTask | str,
        dest: str | os.PathLike[str],
        *,
        max_bytes: int = _download.DEFAULT_MAX_BYTES,
        clip: int | None = None,
        timeout: float | None = _download.DEFAULT_DOWNLOAD_TIMEOUT,
    ) -> Path:
        """Save a done task's result file (or any http(s) URL) to ``dest``.

        The file is streamed to a temporary file beside ``dest`` and renamed into place:
        on any failure ``dest`` is left as it was and no temporary file remains. The
        API key is never sent to the storage host.

        Args:
            task_or_url: a done [Task][] or [MediaTask][gptunnel_async.MediaTask], or
                an http(s) URL. A media task with several files (music clips) needs
                ``clip``; ``download_results`` saves them all.
            dest: the file to write (replaced if it exists), or an existing folder to
                write a new file into under the URL's file name (``x_result.png``)
                when it is a plain file name with an image, audio or video extension,
                else under the task id (``result`` for a URL) with the extension of
                the answer's ``Content-Type`` if it is a known media type
                (``image/png``: ``<task id>.png``), else ``.bin``; with ``-1``,
                ``-2``... added when that name is taken: a name from the server never
                replaces a file. Not empty (``""`` would mean the current folder).
            max_bytes: the largest body accepted (256 MiB by default).
            clip: which file of a task with several: an index into its ``urls``
                (suno's clips, in order).
            timeout: the deadline of the whole download in seconds, redirects and
                retries included (300 by default; at most a day), or ``None`` for none; each read,
                and the answer's headers, must also arrive within the client's
                ``timeout``.

        Returns:
            The path written.

        Raises:
            ConfigurationError: the task is not done, has several files and no
                ``clip`` (or ``clip`` is out of range), a URL given is not http(s),
                ``dest`` is not a path, is empty (``""`` would mean the current
                folder) or its folder does not exist, ``max_bytes`` is not a positive
                number, or ``timeout`` is not one of seconds up to a day.
            NotFoundError: the storage host answered 404; the result has usually
                expired (so may a 403, as ``PermissionDeniedError``).
            DownloadError: the body is over ``max_bytes``, the deadline passed, the
                task's URL is unusable, a redirect was refused, the host is not public
                (see ``allow_private_result_urls``), the file could not be written
                (a folder it may not write to, a full disk), or the host answered 200
                with a document (an HTML, JSON or XML error page, by its
                ``Content-Type`` or its first bytes) where the file must be an image,
                audio or video: a task's result, a URL or ``dest`` with a media
                extension, or an answer that says it is one. Not retried; nothing
                is written.
            APIConnectionError: the network failed, after the retries.
        """
        with self._key_masked():  # its text quotes the argument: the key, pasted there?
            url, fallback_name = _download.result_url(task_or_url, clip)
        limit = count("max_bytes", max_bytes, 1)
        deadline = optional(seconds_within_a_day, "timeout", timeout)
        target = _download.resolve_target(dest, url, fallback_name)
        self._get_session()  # a closed client fails before touching the disk
        of_task = isinstance(task_or_url, Task | MediaTask)
        return await self._save(url, target, limit, deadline, of_task=of_task)

    @contextlib.contextmanager
    def _key_masked(self) -> Iterator[None]:
        """The SDK's errors raised inside, with the key masked in their texts: one that
        quotes an argument shows the key if it was passed there by mistake."""
        try:
            yield
        except GPTunnelError as exc:
            made_safe(exc, self._transport.secret)
            raise

    async def _save(
        self,
        url: URL,
        target: _download.Target,
        limit: int,
        deadline: float | None,
        *,
        of_task: bool,
    ) -> Path:
        return await _download.download(
            self._transport,
            url,
            target,
            max_bytes=limit,
            timeout=deadline,
            destinations=self._destinations,
            of_task=of_task,
        )

    async def download_results(
        self,
        task: Task | MediaTask,
        folder: str | os.PathLike[str],
        *,
        max_bytes: int = _download.DEFAULT_MAX_BYTES,
        timeout: float | None = _download.DEFAULT_DOWNLOAD_TIMEOUT,
    ) -> list[Path]:
        """Save every result file of a done task into ``folder``: each music clip (a
        preview stub too; ``MediaClip.is_preview`` tells it apart), or the one file.

        Each file is saved as [download_result][gptunnel_async.GPTunnelClient.download_result]
        saves one, one after the other, under its URL's file name. Where that is
        unusable, a task's only file is named as ``download_result`` names it
        (``<task id>.png``), and file ``n`` of several ``<task id>-<n>`` with the
        extension of its answer's media type (else ``.bin``); two URLs of one name give
        ``<task id>-<n>`` with its extension. Files saved before a failure stay, and
        the error carries a note (PEP 678, shown in its traceback) naming them.

        Args:
            task: a done [Task][] or [MediaTask][gptunnel_async.MediaTask].
            folder: an existing folder.
            max_bytes: the largest body accepted per file (256 MiB by default).
            timeout: the deadline of each file's download in seconds (300 by default;
                at most a day), or ``None`` for none.

        Returns:
            The paths written, in the order of the task's ``urls``.

        Raises:
            ConfigurationError: the task is not done, ``folder`` is empty or not an
                existing folder, ``max_bytes`` is not a positive number, or ``timeout``
                is not one of seconds up to a day.
            NotFoundError: the storage host answered 404; the result has usually expired.
            DownloadError: the task lists more than 100 files (a server's answer gone
                wrong: GPTunnel's models give one to a few), a body is over
                ``max_bytes``, a deadline passed, a URL is unusable, a redirect was
                refused, a host is not public, a file could not be written, or a host
                answered 200 with a document (an HTML, JSON or XML error page) rather
                than the image, audio or video file.
            APIConnectionError: the network failed, after the retries.
        """
        saved: list[Path] = []
        try:
            async for path in self._results_saved(task, folder, max_bytes, timeout):
                saved.append(path)
        except GPTunnelError as exc:
            if saved:  # kept, so a caller that saves again knows what it has
                shown = ", ".join(str(path) for path in saved)
                exc.add_note(f"saved before this failure, and kept: {shown}")
            raise
        return saved

    async def _results_saved(
        self,
        task: Task | MediaTask,
        folder: str | os.PathLike[str],
        max_bytes: int,
        timeout: float | None,
    ) -> AsyncGenerator[Path, None]:
        """:meth:`download_results`, each path given as soon as its file is saved (the
        command line reports each); every argument is checked before the first."""
        if not isinstance(task, Task | MediaTask):
            with self._key_masked():
                raise ConfigurationError(
                    f"task must be a Task or a MediaTask, got {describe(task)}"
                )
        files = [_download.server_url(url) for url in _download.files_to_save(task)]
        limit = count("max_bytes", max_bytes, 1)
        deadline = optional(seconds_within_a_day, "timeout", timeout)
        targets = _download.folder_targets(folder, files, task.id)
        self._get_session()
        for url, target in zip(files, targets, strict=True):
            yield await self._save(url, target, limit, deadline, of_task=True)
