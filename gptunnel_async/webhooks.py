"""Webhooks: GPTunnel POSTs the finished task to the ``webhook`` URL given at create time.

A push costs no polling, but a delivery can be lost, and anyone who learns the URL can
POST to it. So a ``WebhookReceiver`` puts a random secret token in the callback URL
it hands out and accepts only POSTs that carry it (compared in constant time), and its
``wait_for_result`` finishes on whichever comes first: the webhook, or a slow fallback
poll:

<!-- skip: next -->

```python
receiver = WebhookReceiver("https://bot.example/gptunnel/webhook")
app.router.add_post("/gptunnel/webhook", receiver.handler)  # your aiohttp app
...
task = await client.faceswap.create(source, face, webhook=receiver.url)
done = await receiver.wait_for_result(client.faceswap, task.id)
```

Other web frameworks call ``parse_webhook`` (or ``WebhookReceiver.receive``) with the
request's body and its ``token`` query parameter. The receiver and the waits
must run in one process, on one event loop.

A delivery is read like an answer of the API: as its family's model (a ``/media``
delivery is a ``MediaTask``, with its clips), and with the API key and the receiver's
secret masked in everything made from it (exception texts, reprs), whatever field
echoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
from collections import OrderedDict
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, Final, Literal, TypeVar, overload

from aiohttp import web

from ._bounded_body import bounded_body
from ._checks import (
    MAX_WEBHOOK_URL_LENGTH,
    WEBHOOK_TOKEN_PARAM,
    describe,
    describe_url,
    http_url,
    instance_of,
    optional,
    text,
    webhook_url,
    without_userinfo,
)
from ._in_process import InProcessOnly
from ._many import AsCompleted, wait_many
from ._polling import PollPolicy
from ._safe_errors import made_safe, secret_arguments
from ._sansio.pacing import poll_interval
from ._sansio.requests import content_codings
from ._sansio.responses import decode_any_task, secret_masked
from .errors import (
    ConfigurationError,
    GPTunnelError,
    TaskFailedError,
    WebhookVerificationError,
)
from .families import TaskResource
from .models import MediaTask, Task, TaskLike

__all__ = [
    "DEFAULT_FALLBACK_INTERVAL",
    "DELIVERY_BODY_TIME",
    "MAX_WEBHOOK_BYTES",
    "REMEMBERED_BYTES",
    "REMEMBERED_TASKS",
    "TOKEN_PARAM",
    "WebhookReceiver",
    "parse_webhook",
]

TOKEN_PARAM: Final = WEBHOOK_TOKEN_PARAM
"""The query parameter of the callback URL that holds the receiver's secret (masked,
like the API key, in the task a create call returns and in its errors)."""

MAX_WEBHOOK_BYTES: Final = 1024 * 1024
"""1 MiB: a task object is about 1 KiB; a bigger POST is refused unread."""

DELIVERY_BODY_TIME: Final = 30.0
"""Seconds a delivery's body may take to arrive in full, once its headers have (a task
object of about 1 KiB takes milliseconds): past it the POST is answered 408 and its
connection closed. aiohttp's server sets no such deadline, so a body that stopped
coming (a sender gone without closing, or one sending a byte a minute) held the
handler and its connection forever."""

DEFAULT_FALLBACK_INTERVAL: Final = 30.0
"""Seconds between the fallback polls of a webhook wait: a lost delivery costs at most
this much lateness, and a two-minute task a handful of reads."""

REMEMBERED_TASKS: Final = 10_000
"""At most this many finished tasks are kept for waits that have not started yet."""

REMEMBERED_BYTES: Final = 16 * 1024 * 1024
"""16 MiB: at most this much of their deliveries is kept too. Past either bound the
oldest are forgotten (their waits find them by the fallback poll instead), so POSTs for
tasks nobody waits for cannot grow the process without bound."""

T = TypeVar("T", bound=TaskLike)


@overload
def parse_webhook(
    body: bytes | str,
    token: str | None,
    *,
    secret: str,
    family: TaskResource[T],
    api_key: str | None = None,
) -> T: ...


@overload
def parse_webhook(
    body: bytes | str,
    token: str | None,
    *,
    secret: str,
    family: None = None,
    api_key: str | None = None,
) -> Task | MediaTask: ...


@secret_arguments  # its errors leave without the frames that held the key or secret
def parse_webhook(
    body: bytes | str,
    token: str | None,
    *,
    secret: str,
    family: TaskResource[Any] | None = None,
    api_key: str | None = None,
) -> TaskLike:
    """The task a webhook POST carries, once its ``token`` proves it came from our URL.

    Args:
        body: the POST's raw body (a task object, as the family's result endpoint
            answers it).
        token: the ``token`` query parameter of the URL the POST came to, if any.
        secret: the receiver's secret (``WebhookReceiver.secret``): 16 or more
            printable ASCII characters without spaces.
        family: the family the task belongs to (e.g. ``client.media``): its model is
            returned, and its client's key is masked. Without it the body's shape
            decides: a ``/media`` answer (a ``code``, ``model`` or ``url``, or clips)
            is a ``MediaTask``, a task object (``"object": "task"``) a ``Task``.
        api_key: the key to mask in everything made from the body (exception texts,
            reprs), in any harmless variation: by default the family's client's, else
            ``$GPTUNNEL_API_KEY``, the one a client without ``api_key`` uses.

    Returns:
        The task, as the webhook reported it: the family's model (``Task`` or
        ``MediaTask``).

    Raises:
        WebhookVerificationError: the token is missing, wrong or not a string (checked in
            constant time).
        ResponseDecodeError: the body is not a task object.
        APIError: a ``/media`` body with a non-zero ``code`` (the class that code raises).
        ConfigurationError: ``body`` is not bytes or text, ``secret`` is not one a
            ``WebhookReceiver`` takes, ``api_key`` is not a string, or ``family`` is
            not a task family (``client.faceswap``, not ``"faceswap"`` or the client).

    ``secret`` is masked too, in the task and in the errors: a task that quotes the
    callback URL shows ``?token=***``. No error leaves with a frame that holds
    ``api_key``, ``secret`` or ``token`` as a local (error trackers show the locals of a
    traceback's frames).
    """
    _check_secret(secret)
    if api_key is not None:
        _check_key(api_key)
    optional(_family, "family", family)
    if not _carries(token, secret):
        raise WebhookVerificationError("the webhook's URL does not carry this receiver's token")
    with _hiding(secret):
        task: TaskLike = (
            decode_any_task(_body(body), 200, secret=api_key or _environment_key())
            if family is None
            else family._parse_delivery(_body(body), api_key)
        )
    return secret_masked(task, secret)


@contextlib.contextmanager
def _hiding(secret: str) -> Iterator[None]:
    """An SDK error raised inside leaves with ``secret`` masked in its text and models:
    a task that echoes its callback URL (an error quoting it, a media task's input)
    must not hand out, in error reports, the token that forges deliveries."""
    try:
        yield
    except GPTunnelError as exc:
        made_safe(exc, secret)
        raise


def _check_key(api_key: object) -> str:
    """``api_key`` if it is a non-blank string; the error names its type, never its value."""
    key = text("api_key", api_key)
    if not key.strip():
        raise ConfigurationError("api_key must be a non-empty string, got a blank one")
    return key


def _family(name: str, value: object) -> object:
    """``value`` if it is a task family (``client.faceswap``, ``client.media``...)."""
    if not isinstance(value, TaskResource):
        raise ConfigurationError(
            f"{name} must be a client's task family such as client.faceswap or "
            f"client.media, got {describe(value)}"
        )
    return value


def _environment_key() -> str | None:
    """The key a ``GPTunnelClient()`` made without one would use, if any."""
    return os.environ.get("GPTUNNEL_API_KEY") or None


def _check_secret(secret: object) -> None:
    """``secret`` if it can be a receiver's token (:func:`_usable_secret`); else
    ``ConfigurationError``, which never quotes it (nor what holds it: bytes, a list)."""
    if not _usable_secret(text("secret", secret)):
        raise ConfigurationError(
            "secret must be a string of at least 16 printable ASCII characters without "
            "spaces, got a str that is not"
        )


def _usable_secret(secret: object) -> bool:
    """A secret that goes into a URL as it is: 16 or more printable ASCII characters."""
    return (
        isinstance(secret, str)
        and len(secret) >= 16
        and secret.isascii()
        and secret.isprintable()
        and " " not in secret
    )


def _carries(token: object, secret: str) -> bool:
    """Whether ``token`` is ``secret``, compared in constant time."""
    return isinstance(token, str) and hmac.compare_digest(_raw(token), _raw(secret))


def _raw(text: str) -> bytes:
    """``text`` as bytes for a constant-time comparison, whatever characters it holds
    (a lone surrogate from a mangled query string included)."""
    return text.encode("utf-8", "surrogatepass")


def _body(body: bytes | str) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return _raw(body)
    raise ConfigurationError(f"body must be bytes, got {describe(body)}")


class WebhookReceiver(InProcessOnly):
    """Hands out a callback URL with a secret token, accepts the POSTs that carry it, and
    lets waits finish on them.

    Deliveries are read as their family's model, with the API key masked in everything
    made from them: a wait (``wait_for_result(client.media, ...)``) reads its task with
    its family's model and its client's key; ``receive`` and ``handler``, which cannot
    know the family, go by the body's shape and mask ``api_key``.

    Args:
        public_url: where GPTunnel can reach ``handler`` (http or https, no query).
        secret: the token to require; by default a fresh random one (32 bytes).
        api_key: the key masked in what ``receive`` returns or raises; by default
            ``$GPTUNNEL_API_KEY``, as for ``GPTunnelClient``. Never shown in the
            receiver's ``repr``, nor is the secret, nor a password in ``public_url``.

    Raises:
        ConfigurationError: the URL is not an absolute http(s) URL, holds a space or
            a control character (sent percent-encoded, it would name another path),
            has a query, or makes a callback URL longer than 2048 characters with its
            token; the secret is short; or ``api_key`` is not a string.
    """

    _holds = "the API key and its webhook's secret token"
    _instead = "make a WebhookReceiver in the other process, with the same secret= for the same URL"

    @secret_arguments
    def __init__(
        self, public_url: str, *, secret: str | None = None, api_key: str | None = None
    ) -> None:
        if isinstance(public_url, str):  # a space or NUL would go out percent-encoded
            webhook_url("public_url", public_url)
        base = http_url("public_url", public_url)
        if base.query_string:
            raise ConfigurationError(
                f"public_url must not have a query, got {describe_url(public_url)}"
            )
        if secret is not None:
            _check_secret(secret)
        self._api_key = _environment_key() if api_key is None else _check_key(api_key)
        self.secret = secret or secrets.token_urlsafe(32)
        self.url = str(base.with_query({TOKEN_PARAM: self.secret}))
        """The callback URL to pass as ``webhook=``: ``public_url`` with the token."""
        if len(self.url) > MAX_WEBHOOK_URL_LENGTH:  # every create would refuse it
            raise ConfigurationError(
                f"public_url makes a callback URL of {len(self.url)} characters with its "
                f"token, over the {MAX_WEBHOOK_URL_LENGTH} a webhook URL can have: "
                f"{describe_url(public_url)}"
            )
        self._public_url = without_userinfo(str(base))
        """``public_url`` as the ``repr`` shows it: a password in it as ``***``."""
        self._waiting: dict[str, set[asyncio.Future[_Delivery]]] = {}
        """The waits on each task, each given the delivery to read as its family's."""
        self._arrived: OrderedDict[str, _Delivery] = OrderedDict()
        """The deliveries of finished tasks nobody waits for yet."""
        self._arrived_bytes = 0

    def __repr__(self) -> str:
        return f"WebhookReceiver({self._public_url!r})"

    @secret_arguments  # ``token`` is the secret when it is right
    def receive(self, body: bytes | str, token: str | None) -> Task | MediaTask:
        """Check and parse one webhook POST, and hand it to the waits on its task.

        Each wait reads the delivery as its own family's model and ends only if that
        model has ended (a body shaped as a task object may be a ``MediaTask`` that is
        not done). A delivery nobody waits for yet is kept if it has ended, as its
        shape reads it.

        Args:
            body: the POST's raw body.
            token: the ``token`` query parameter of the URL the POST came to, if any.

        Returns:
            The task, as the webhook reported it: a ``MediaTask`` for a ``/media``
            body, else a ``Task`` (see ``parse_webhook``).

        Raises:
            WebhookVerificationError: the token is missing or wrong.
            ResponseDecodeError: the body is not a task object.
            APIError: a ``/media`` body with a non-zero ``code``.
        """
        task = parse_webhook(body, token, secret=self.secret, api_key=self._api_key)
        self._deliver(task.id, _Delivery(_body(body)), keep=task.is_terminal)
        return task

    async def handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler for the webhook route.

        Args:
            request: GPTunnel's POST.

        Returns:
            200 for a task, 403 for a POST without the token, 415 for one with a
            ``Content-Encoding`` other than ``identity`` (unread), 400 for a body that
            is not a task (or a media error body) or was cut short, 408 for one not in
            full within :data:`DELIVERY_BODY_TIME`, 413 for one over 1 MiB.

        aiohttp's server decodes a gzip, deflate or br body before any handler runs,
        which values of the header it decodes depend on its version, and 3.10 inflates
        each read of the connection (up to 256 KiB) without a bound: a 1 MiB gzip bomb
        costs 270 MiB, with the token or without. Run the app with
        ``web.AppRunner(app, access_log=None, auto_decompress=False)``: the 415 then
        comes before anything is inflated.
        """
        if not _carries(request.query.get(TOKEN_PARAM), self.secret):  # before the body
            request.content.feed_eof()  # unread: aiohttp would read on, 10 s, and inflate it
            return _closing({"error": "forbidden"}, 403)
        if _coded(request):  # before the body: refused whatever the server would decode
            request.content.feed_eof()  # unread: aiohttp would read on, and log its errors
            return _closing(
                {"error": "a coded body (Content-Encoding) is not accepted"},
                415,
                {"Accept-Encoding": "identity"},
            )
        body = await _delivery_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            self.receive(body, request.query.get(TOKEN_PARAM))
        except WebhookVerificationError:
            return web.json_response({"error": "forbidden"}, status=403)
        except GPTunnelError:  # not a task object, or a media body with an error code
            return web.json_response({"error": "not a task object"}, status=400)
        return web.json_response({"ok": True})

    async def wait_for_result(
        self,
        tasks: TaskResource[T],
        task_id: str,
        *,
        fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
        timeout: float | None = 600.0,
    ) -> T:
        """Wait for a task created with ``webhook=self.url``: finished by its webhook, or
        by a poll every ``fallback_interval`` seconds if the delivery is lost.

        The delivery is read as ``tasks``' model (a ``MediaTask`` for ``client.media``),
        with its client's key and this receiver's secret masked (as is the fallback
        poll's task), and ends the wait only if that model has ended:
        done, or failed. A delivery that model reads as not finished (a media task
        with no file yet, say) is passed over, and the wait goes on.

        Args:
            tasks: the family that reads the task, e.g. ``client.faceswap`` or
                ``client.media``.
            task_id: the task to wait for.
            fallback_interval: seconds between fallback reads (the first is at once),
                0.01 to 86400.
            timeout: the deadline of the whole wait in seconds, or ``None`` for none.

        Returns:
            The done task, as the family's model.

        Raises:
            ConfigurationError: ``fallback_interval`` or ``timeout`` makes no sense.
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            ResponseDecodeError: the delivery is not the family's task object.
            APIError: a read failed in a way that is not retried.
        """
        with _hiding(self.secret):
            done = await self._wait(tasks, task_id, fallback_interval, timeout)
        return secret_masked(done, self.secret)

    @overload
    def as_completed(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        *,
        fallback_interval: float = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsCompleted[T]: ...

    @overload
    def as_completed(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        *,
        fallback_interval: float = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[True],
    ) -> AsCompleted[T | GPTunnelError]: ...

    def as_completed(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        *,
        fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
        timeout: float | None = 600.0,
        return_exceptions: bool = False,
    ) -> AsCompleted[Any]:
        """:meth:`wait_for_result` for many tasks at once; iterate to get each as it
        finishes, as a family's ``as_completed`` does for polled waits.

        Args:
            tasks: the family that reads the tasks, e.g. ``client.media``.
            task_ids: the tasks, each created with ``webhook=self.url``.
            fallback_interval: seconds between each wait's fallback reads.
            timeout: the deadline of each wait in seconds, or ``None`` for none.
            return_exceptions: yield a failure as its exception instead of raising it.

        Returns:
            An [AsCompleted][gptunnel_async.AsCompleted]: an async iterator and an async
            context manager that cancels the waits still running when it ends.

        Raises:
            ConfigurationError: ``task_ids`` is one string or holds a blank id,
                ``fallback_interval`` or ``timeout`` makes no sense, or
                ``return_exceptions`` is not a bool (before any wait).
        """
        waits = self._waits(tasks, task_ids, fallback_interval, timeout, return_exceptions)
        return AsCompleted(waits, return_exceptions=return_exceptions)

    @overload
    async def wait_many(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        *,
        fallback_interval: float = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[T]: ...

    @overload
    async def wait_many(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        *,
        fallback_interval: float = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[True],
    ) -> list[T | GPTunnelError]: ...

    async def wait_many(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        *,
        fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
        timeout: float | None = 600.0,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """:meth:`wait_for_result` for many tasks at once; return the finished tasks in
        the order given, as a family's ``wait_many`` does for polled waits.

        Args:
            tasks: the family that reads the tasks, e.g. ``client.media``.
            task_ids: the tasks, each created with ``webhook=self.url``.
            fallback_interval: seconds between each wait's fallback reads.
            timeout: the deadline of each wait in seconds, or ``None`` for none.
            return_exceptions: put a failure's exception in its place instead of raising.

        Returns:
            The done tasks (or, with ``return_exceptions``, their errors), in the order
            of ``task_ids``.

        Raises:
            ConfigurationError: ``task_ids`` is one string or holds a blank id,
                ``fallback_interval`` or ``timeout`` makes no sense, or
                ``return_exceptions`` is not a bool (before any wait).
            GPTunnelError: without ``return_exceptions``, the first failure in the order
                given, once every wait has ended (no failure cancels another wait;
                cancelling this call cancels them all).
        """
        waits = self._waits(tasks, task_ids, fallback_interval, timeout, return_exceptions)
        return await wait_many(waits, return_exceptions=return_exceptions)

    def _waits(
        self,
        tasks: TaskResource[T],
        task_ids: Iterable[str],
        fallback_interval: float,
        timeout: float | None,
        return_exceptions: bool,
    ) -> list[Coroutine[Any, Any, T]]:
        """The waits of :meth:`as_completed` and :meth:`wait_many`, not started, every
        argument checked first."""
        _family("tasks", tasks)
        instance_of(bool)("return_exceptions", return_exceptions)
        _fallback_policy(fallback_interval, timeout)
        checked = tasks._task_ids(task_ids)
        return [
            self.wait_for_result(
                tasks, task_id, fallback_interval=fallback_interval, timeout=timeout
            )
            for task_id in checked
        ]

    async def _wait(
        self,
        tasks: TaskResource[T],
        task_id: str,
        fallback_interval: float,
        timeout: float | None,
    ) -> T:
        """:meth:`wait_for_result`, its outcome not yet masked."""
        _family("tasks", tasks)
        task_id = tasks._task_id(task_id)
        policy = _fallback_policy(fallback_interval, timeout)
        # The fallback poll is the wait the hooks see (its reads are its requests): one
        # a delivery ends is reported as ended the way the delivery says, not cancelled.
        waiter = tasks.wait_for_result(task_id, policy=policy)
        ended = self._ended(tasks, self._forget(task_id))
        if ended is not None:
            waiter._settle(ended)
            waiter.close()
            return _outcome(ended)
        # The poll's deadline is the wait's: it ends the race with WaitTimeoutError.
        polled = asyncio.ensure_future(waiter)
        try:
            while True:
                delivered = await self._next_delivery(task_id, polled)
                if delivered is None:
                    return polled.result()
                # A delivery its family reads as not ended is passed over. One that came
                # while this wait was not listening was kept if it had ended: look too.
                ended = self._ended(tasks, delivered) or self._ended(tasks, self._forget(task_id))
                if ended is not None:
                    waiter._settle(ended)
                    return _outcome(ended)
        finally:
            polled.cancel()
            await asyncio.wait((polled,))
            if not polled.cancelled():
                polled.exception()  # a push won; whatever the poll ended with is moot

    async def _next_delivery(self, task_id: str, polled: asyncio.Future[Any]) -> _Delivery | None:
        """The next delivery for ``task_id``, or ``None`` once ``polled`` has ended first."""
        pushed: asyncio.Future[_Delivery] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(task_id, set()).add(pushed)
        try:
            await asyncio.wait((pushed, polled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waits = self._waiting.get(task_id, set())
            waits.discard(pushed)
            if not waits:
                self._waiting.pop(task_id, None)
        return pushed.result() if pushed.done() else None

    @staticmethod
    def _ended(tasks: TaskResource[T], delivery: _Delivery | None) -> T | None:
        """``delivery`` as ``tasks``' model if that model has ended (done or failed)."""
        if delivery is None:
            return None
        task = tasks._parse_delivery(delivery.body)
        return task if task.is_done or task.is_failed else None

    def _deliver(self, task_id: str, delivery: _Delivery, *, keep: bool) -> None:
        """Hand ``delivery`` to the waits on ``task_id``; with none, keep it if ``keep``
        (the task has ended) for a wait that has not started yet."""
        waits = self._waiting.pop(task_id, None)
        if not waits:
            if keep:
                self._remember(task_id, delivery)
            return
        for pushed in waits:
            if not pushed.done():
                pushed.set_result(delivery)

    def _remember(self, task_id: str, delivery: _Delivery) -> None:
        """Keep the delivery of ``task_id`` for a wait that has not started yet, within
        both bounds."""
        self._forget(task_id)
        self._arrived[task_id] = delivery
        self._arrived_bytes += len(delivery)
        while len(self._arrived) > REMEMBERED_TASKS or self._arrived_bytes > REMEMBERED_BYTES:
            _, forgotten = self._arrived.popitem(last=False)
            self._arrived_bytes -= len(forgotten)

    def _forget(self, task_id: str) -> _Delivery | None:
        """Take a remembered delivery out, if it is there."""
        kept = self._arrived.pop(task_id, None)
        if kept is not None:
            self._arrived_bytes -= len(kept)
        return kept


async def _delivery_body(request: web.Request) -> bytes | web.Response:
    """A delivery's body, or the answer that refuses it (each closes the connection, whose
    body is not read in full): 400 cut short, 408 not in full within
    :data:`DELIVERY_BODY_TIME`, 413 over :data:`MAX_WEBHOOK_BYTES`."""
    try:
        body = await bounded_body(request, MAX_WEBHOOK_BYTES, DELIVERY_BODY_TIME)
    except (web.RequestPayloadError, ConnectionError):
        # Answered here: left to aiohttp, it is a 500 and an ERROR whose traceback's
        # locals hold the request line, token and all. The rest of the body is not
        # read either: aiohttp would read on after the answer and log the same error,
        # so the body is marked as ended.
        request.content.feed_eof()
        return _closing({"error": "unreadable body"}, 400)
    except TimeoutError:
        request.content.feed_eof()
        return _closing({"error": "the body did not arrive in time"}, 408)
    if body is None:
        request.content.feed_eof()  # else aiohttp reads on, 10 s, for an endless one
        return _closing({"error": "too large"}, 413)
    return body


def _coded(request: web.Request) -> bool:
    """Whether ``request`` says its body went through a content coding: any
    ``Content-Encoding`` token other than ``identity``, in any case or spacing, on any
    of its lines (``gzip``, ``x-gzip``, ``br``, unknown ones alike). GPTunnel is not
    known to compress its deliveries, and whether aiohttp's server decodes one depends
    on its version (3.10 left ``gzip `` with a space coded, 3.14 decodes it)."""
    return bool(content_codings(request.headers.getall("Content-Encoding", ())))


def _closing(
    answer: dict[str, str], status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """``answer`` as JSON with ``status`` (and ``headers``), closing the connection
    after it."""
    response = web.json_response(answer, status=status, headers=headers)
    response.force_close()
    return response


class _Delivery:
    """A delivery's body, kept for a wait: a local of a wait's frame (a future's result,
    a remembered delivery) that shows its size, never the body, which may echo the key."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __len__(self) -> int:
        return len(self.body)

    def __repr__(self) -> str:
        return f"<webhook delivery of {len(self.body)} bytes>"


def _fallback_policy(fallback_interval: float, timeout: float | None) -> PollPolicy:
    """The pacing and deadline of a webhook wait's fallback poll."""
    every = poll_interval("fallback_interval", fallback_interval)
    return PollPolicy(initial=every, max_interval=every, strategy="exponential", timeout=timeout)


def _outcome(task: T) -> T:
    if task.is_failed:
        raise TaskFailedError(task)
    return task
