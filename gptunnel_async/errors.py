"""Every exception the SDK raises, so one ``except GPTunnelError`` catches them all.

The tree:

```text
GPTunnelError
├── ConfigurationError          (also ValueError) a bad key, URL, task id or option
├── UsageError                  (also RuntimeError) a closed client, a waiter used twice
├── APIError                    the API answered with an error (status or media code)
│   ├── BadRequestError             400, media 3
│   │   └── ContentPolicyError          media 1001 and 1002: content blocked
│   ├── AuthenticationError         401, media 2
│   ├── InsufficientBalanceError    402, media 5
│   ├── PermissionDeniedError       403, media 7
│   ├── NotFoundError               404, media 4 and 99
│   ├── RateLimitError              429 (retried; .retry_after)
│   └── ServerError                 5xx, media 1, 500, 6 (500/502/503/504, media 1/500/6 retried)
├── APIConnectionError          the network failed (retried)
│   ├── APITimeoutError             a request timed out, or 408 (retried)
│   └── TLSError                    TLS could not be set up: a bad certificate (not retried)
├── ResponseDecodeError         a 2xx body that is not what the endpoint returns
├── DownloadError               a result file could not be fetched or saved
├── TaskFailedError             the task itself failed: .task_id, .task
├── WaitTimeoutError            (also TimeoutError) a wait ran past its deadline
├── WebhookVerificationError    a webhook POST without this receiver's secret token
├── StoreUnavailableError       the fleet's store (Redis) could not be reached or failed
└── StoreDataError              a value in the fleet's store that this version cannot read
```

Every one survives ``pickle`` with its attributes, so errors can cross process pools and
task queues; its ``__cause__`` (a Python-side detail) stays behind, as with any exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

from ._sansio.statuses import DONE_STATUSES, Stage, classify
from ._sansio.text import clip

if TYPE_CHECKING:
    from .models import TaskLike, ValidationIssue

MAX_MESSAGE: Final = 2000
"""The longest text any of these errors has, in characters."""

API_UNREACHED: Final = (
    "no connection to the API: check base_url (GPTUNNEL_BASE_URL when not given; "
    "GPTunnel's is https://gptunnel.ru/v1) and that its server runs"
)
"""What an API request's :class:`APIConnectionError` adds when no connection to
``base_url``'s host could be opened at all (refused, a name that does not resolve): a
mistyped or stale ``base_url`` fails so, and aiohttp's own words name only a host."""

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ContentPolicyError",
    "DownloadError",
    "GPTunnelError",
    "InsufficientBalanceError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "StoreDataError",
    "StoreUnavailableError",
    "TLSError",
    "TaskFailedError",
    "UsageError",
    "WaitTimeoutError",
    "WebhookVerificationError",
]


def _bounded(arg: object) -> object:
    return clip(arg, MAX_MESSAGE) if isinstance(arg, str) and len(arg) > MAX_MESSAGE else arg


def _restore(cls: type[GPTunnelError], args: tuple[Any, ...]) -> GPTunnelError:
    """An error of class ``cls`` with ``args``, its attributes to be set by pickle."""
    error = cls.__new__(cls, *args)
    error.args = args  # OSError's subclasses (TimeoutError) leave that to __init__
    return error


class GPTunnelError(Exception):
    """Base class of every error raised by gptunnel-async.

    Its text is bounded: a message over 2,000 characters is cut (with ``…``), whatever a
    server sent. The SDK's own errors bound each server-sent part to a few hundred.

    Args:
        args: the message, as for any exception.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(_bounded(arg) for arg in args))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, which keyword-only arguments and
        # built messages refuse; restoring ``args`` and ``__dict__`` as they are does not.
        return _restore, (type(self), self.args), self.__dict__


class ConfigurationError(GPTunnelError, ValueError):
    """A value given to the SDK is unusable: a missing key, a bad URL, a blank task id."""


class UsageError(GPTunnelError, RuntimeError):
    """The SDK was used in a way it cannot support, such as a request on a closed client."""


class APIError(GPTunnelError):
    """The API answered with an HTTP error status, or (``/media``) a non-zero ``code``;
    a subclass names which.

    ``message``, ``type``, ``param`` and ``code`` come from the JSON error body when it
    parses; otherwise ``message`` is the start of the raw body.

    Attributes:
        message: what went wrong, in the API's words.
        status_code: the HTTP status; a media error that came with HTTP 200 keeps 200.
        type: the API's error type, e.g. ``"insufficient_balance_error"``.
        param: the request field at fault, if the API named one.
        code: the API's error code, if any; a media error's code, e.g. ``"3"``.
        retry_after: the server's ``Retry-After`` hint in seconds, if it sent one.
        issues: the field problems of a media validation error (code 3), in the API's
            order; ``param`` is the first one's field.
        hint: what to check, added to the text in parentheses (not kept: the text
            holds it).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        issues: tuple[ValidationIssue, ...] = (),
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.issues = issues
        # A media error comes with HTTP 200, which would read as a success: its code says more.
        status = f"code {clip(code, 20)}" if status_code == 200 and code else str(status_code)
        label = f"{status} {clip(type, 100)}" if type else status
        hint = f" ({hint})" if hint else self._hint
        super().__init__(f"{label}: {clip(message, 500)}{hint}")

    _hint: ClassVar[str] = ""
    """What to check, added to the text (not to ``message``) where the API's words rarely
    say it."""


class BadRequestError(APIError):
    """HTTP 400 (media code 3): the request was malformed, e.g. a missing ``taskId``."""


class ContentPolicyError(BadRequestError):
    """The prompt or an image was blocked by content moderation (media codes 1001, 1002)."""


class AuthenticationError(APIError):
    """HTTP 401 (media code 2): the API key is missing, wrong or revoked."""

    _hint: ClassVar[str] = " (check the API key: GPTUNNEL_API_KEY, or api_key= or --api-key)"


class InsufficientBalanceError(APIError):
    """HTTP 402 (media code 5): the organisation's balance is too low."""


class PermissionDeniedError(APIError):
    """HTTP 403 (media code 7): the key may not use this resource or model."""


class NotFoundError(APIError):
    """HTTP 404 (media codes 4, 99): no such task, resource or method."""


class RateLimitError(APIError):
    """HTTP 429: too many requests; retried, honouring ``retry_after``."""


class ServerError(APIError):
    """HTTP 5xx (media codes 1, 500, 6): the server failed.

    500, 502, 503, 504 and media codes 1 and 500 (internal error) and 6 (heavy load) are
    retried; a create only after a 503 or media's 6, which refuse it before any work.
    A create's error after any other 5xx but 501, 505 and 511 says the task may have
    started.
    """


class APIConnectionError(GPTunnelError):
    """The request never got a complete answer: DNS, refused or reset connection, cut body."""


class APITimeoutError(APIConnectionError):
    """One request took longer than the client's ``timeout``, or the server answered 408.

    Args:
        message: what timed out.
        status_code: 408 when the server said so, ``None`` when the client gave up.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class TLSError(APIConnectionError):
    """A TLS connection could not be set up: a certificate that does not verify, a
    handshake the server refuses, a fingerprint that does not match.

    Not retried, and it ends a wait at once: it does not heal by itself.
    """


class ResponseDecodeError(GPTunnelError):
    """A successful (2xx) answer whose body is not the JSON object the endpoint returns.

    Often a proxy's HTML page. Also an answer in a content coding the SDK does not
    undo (it asks for ``gzip, deflate`` only; ``br``, ``zstd``, ``compress`` or a stack
    such as ``gzip, gzip`` sent anyway): its body is not read.

    Args:
        message: what was wrong with the body.
        status_code: the answer's HTTP status.
        body: the start of the raw text, for debugging.
    """

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(message)


class DownloadError(GPTunnelError):
    """A result file could not be saved: too large, a bad redirect, an answer that is not
    the whole file (a 2xx other than 200, such as a 206), a 200 answer that is an error
    page (HTML, JSON or XML) rather than the image, audio or video file, a body in a
    content coding that cannot be decoded, or a disk error.

    HTTP errors from the storage host raise the status's [APIError][] subclass
    instead (a 404 or 403 there usually means the result expired).
    """


class TaskFailedError(GPTunnelError):
    """The task reached a failure status.

    Attributes:
        task_id: the task that failed.
        task: its final state; ``task.error`` may say why.
    """

    def __init__(self, task: TaskLike) -> None:
        self.task_id = task.id
        self.task = task
        reason = clip(task.error or "no error message given", 300)
        status = clip(task.status, 40)
        # "task X failed: why"; another failure status in parentheses ("task X failed
        # (error): why"), where "task X error: ..." read as if the SDK had failed.
        said = "failed" if status.strip().lower() == "failed" else f"failed ({status})"
        super().__init__(f"task {clip(task.id, 80)} {said}: {reason}")


class WaitTimeoutError(GPTunnelError, TimeoutError):
    """A wait passed its deadline. It is also a ``TimeoutError``.

    The message says the task "was not seen to finish" in time: it may have finished
    after the wait's last read, which ``task`` shows.

    Attributes:
        task_id: the task waited for.
        timeout: the deadline, in seconds from the start of the wait.
        task: the last state seen, or ``None`` if no read succeeded.
        last_error: the error of the wait's last read, if that read failed (a wait
            rides through transient failures, such as an unreachable host, until its
            deadline: this says why it saw nothing); also the ``__cause__`` of the
            error a wait raises. ``None`` if the last read succeeded.
        still_watched: for a fleet's ``Watcher.result()``: ``True`` if a worker still
            reads the task (ask again later), ``False`` if none will (its wait expired,
            or the store holds no wait for it: a mistyped id, say), ``None`` where
            that is not known (any other wait).

    Args:
        unseen: what the message says when there is no ``task``: "no state read yet",
            unless the waiter knows more (a fleet's ``result()`` on an id that no worker
            registered).
        ended: why the wait ended, if it ended for good, added to the message.
    """

    def __init__(
        self,
        task_id: str,
        timeout: float,
        task: TaskLike | None,
        last_error: GPTunnelError | None = None,
        *,
        unseen: str = "no state read yet",
        still_watched: bool | None = None,
        ended: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.task = task
        self.last_error = last_error
        self.still_watched = still_watched
        seen = f"last seen {clip(task.status, 40)} at {task.percent}%" if task else unseen
        if task is not None and _done_without_files(task):
            seen += ", but with no file to fetch yet"
        if last_error is not None:
            seen += _last_failure(last_error, unreached=task is None)
        if ended:
            seen += f"; {ended}"
        super().__init__(
            f"task {clip(task_id, 80)} was not seen to finish within {timeout:g}s ({seen})"
        )


def _done_without_files(task: TaskLike) -> bool:
    """Whether ``task``'s status says done though the task is not: a media task that
    names no file yet (suno answers ``done`` before its clips' links appear), which a
    wait reads on through; "last seen done" alone would read as a contradiction."""
    done_statuses = getattr(task, "_done_statuses", DONE_STATUSES)
    return not task.is_done and classify(task.status, done_statuses) is Stage.DONE


def _last_failure(error: GPTunnelError, *, unreached: bool) -> str:
    """What a deadline's message says of the wait's last failed read, ``error``: its
    class and (clipped) text, and, if no read of the wait got a task (``unreached``)
    and ``error`` found no server, that no read reached the API, with what to check
    unless ``error``'s own text says it (:data:`API_UNREACHED`, kept whole: the text
    before it is what is clipped, a long host name's)."""
    text, hint = clip(error, MAX_MESSAGE), f"; {API_UNREACHED}"
    told = text.endswith(hint)
    failure = clip(text.removesuffix(hint), 300) + (hint if told else "")
    said = f"; its last read failed: {type(error).__name__}: {failure}"
    if unreached and _never_connected(error):
        said += "; no read reached the API"
        if not told:
            said += ": check base_url and the network"
    return said


def _never_connected(error: GPTunnelError | None) -> bool:
    """Whether ``error`` is a read that found no server to talk to (refused, a name that
    does not resolve), rather than one that timed out, which a server did answer or may
    have (a slow one, a 408, the fleet's cut at its lease)."""
    return isinstance(error, APIConnectionError) and not isinstance(error, APITimeoutError)


class WebhookVerificationError(GPTunnelError):
    """A webhook POST whose callback URL lacks the receiver's secret token: not from
    GPTunnel for a task this receiver asked about, so its body is not trusted."""


class StoreUnavailableError(GPTunnelError):
    """The fleet's store (Redis) could not be reached or failed: what was asked of it
    (registering a wait, a budget's decision) did not happen. The cause is chained."""


class StoreDataError(GPTunnelError):
    """A value in the fleet's store (Redis) that this version cannot read: a record or
    outcome missing a field, naming an unknown family or model, not JSON, not UTF-8; a
    key of the fleet holding a value of another type (Redis's ``WRONGTYPE``).

    ``Watcher.result`` raises it for such an outcome; the watcher's loops never do: they
    log the entry and move it to the fleet's dead letters (see "Running a fleet")."""
