"""What an answer means: its (status, headers, body) as a model or a typed error.

Pure functions, no I/O, so every rule is testable in isolation. The capped read that
produces the body lives in ``_transport``; which errors are worth retrying, in
:mod:`._sansio.retries <gptunnel_async._sansio.retries>`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs
import cattrs

from .._checks import task_id_problem
from ..errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    GPTunnelError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)
from ..models import (
    Balance,
    MediaTask,
    Task,
    TaskLike,
    UnreadableFieldError,
    ValidationIssue,
    converter,
)
from .json_text import loads
from .numbers import digits
from .retries import parse_retry_after
from .text import SHORT_TEXT, SecretMask, body_text, excerpt, mask_for, printable, shorten

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_ISSUES",
    "MEDIA_ERRORS",
    "RESULT_GONE",
    "TASK_FAMILIES",
    "Created",
    "Decoder",
    "Reading",
    "check_answer",
    "decode_balance",
    "decode_json_object",
    "decode_media_task",
    "decode_task",
    "error_from_response",
    "excerpt",
    "masked",
    "media_error",
    "reading",
    "redact",
    "secret_masked",
    "shorten",
    "structure",
    "validation_issues",
    "with_family_hint",
]

M = TypeVar("M", bound=attrs.AttrsInstance)
T_co = TypeVar("T_co", covariant=True)
L = TypeVar("L", bound=TaskLike)
V = TypeVar("V")

MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
"""4 MiB: a task object is about 1 KiB, so a bigger answer is not one and is not kept in memory."""


class Decoder(Protocol[T_co]):
    """Turns a 2xx answer's (body, status) into a model, or raises the typed error it holds.

    ``secret`` is masked in every text the model or the error keeps from the body.
    """

    def __call__(self, body: bytes, status_code: int, /, *, secret: str | None = None) -> T_co:
        """Decode one answer."""


_ERRORS_BY_STATUS: Final[Mapping[int, type[APIError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}

MEDIA_ERRORS: Final[Mapping[int, tuple[type[APIError], str]]] = {
    1: (ServerError, "internal_error"),
    500: (ServerError, "internal_error"),
    2: (AuthenticationError, "invalid_token"),
    3: (BadRequestError, "invalid_input"),
    4: (NotFoundError, "not_found"),
    5: (InsufficientBalanceError, "insufficient_balance"),
    6: (ServerError, "heavy_load"),
    7: (PermissionDeniedError, "model_not_allowed"),
    99: (NotFoundError, "method_not_found"),
    1001: (ContentPolicyError, "content_blocked"),
    1002: (ContentPolicyError, "content_blocked"),
}
"""``/media`` answers errors with HTTP 200 and a non-zero ``code``: the class and the
``type`` each code is raised as. An unknown code is a plain :class:`APIError`."""

_NO_ENDPOINT: Final = "no such endpoint? check base_url: GPTunnel's is https://gptunnel.ru/v1"
"""The hint of a 404 whose body is no JSON error: a path the API does not have, most
often a ``base_url`` without ``/v1`` (GPTunnel answers an unknown task in JSON)."""

RESULT_GONE: Final = (
    "the result has likely expired: GPTunnel keeps results for a limited time "
    "(a face swap's 3 days, suno's 48 hours, some image models' about a day)"
)
"""The hint of a result download answered 403, 404 or 410: storage hosts answer an
expired result so (an expired pre-signed link is a 403, a deleted file a 404).
Lifetimes: GPTunnel's faceswap/result page (a result "may be deleted 3 days after
generation"), its clients' notes (media/generate's link "lives 24h"); see
``docs/errors.md``."""

_GONE_STATUSES: Final = frozenset({403, 404, 410})

RESULT_REFUSED: Final = (
    "the storage host asked for credentials, and a download never sends the API key: "
    "the key is not at fault; the result link may have expired"
)
"""The hint of a result download answered 401: an ``AuthenticationError`` otherwise says
to check the API key, which no download sends (see ``RequestBuilder.fetch``)."""

_RESULT_HINTS: Final = {401: RESULT_REFUSED, **dict.fromkeys(_GONE_STATUSES, RESULT_GONE)}
"""The hint of each status of a result download's answer that has one."""

TASK_FAMILIES: Final = ("faceswap", "bgremover", "midjourney", "media")
"""The task families, each with its own endpoints: a task of one is "not found" on
another's (observed: a Midjourney task id read at ``/faceswap/result`` answers 404)."""


def with_family_hint(error: GPTunnelError, family: str) -> GPTunnelError:
    """``error``, if it is the API's "not found" for a task read through ``family``, with
    its text asking whether the task is another family's (changed in place: its
    attributes stay). A 404 that is no API answer (a path the API lacks, which already
    points at ``base_url``) and every other error are returned as they are."""
    if not isinstance(error, NotFoundError) or error.type in (None, "method_not_found"):
        return error
    others = ", ".join(f"client.{name}" for name in TASK_FAMILIES if name != family)
    hint = f"is it a {family} task? read another family's task through that family: {others}"
    if hint not in error.args[0]:
        error.args = (f"{error.args[0]} ({hint})",)
    return error


_MESSAGE_TEXT: Final = 500
"""The bound of an error's message, in characters: a few hundred, whatever the server sent."""


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` masked in every harmless variation (see ``_sansio.text``)."""
    return mask_for(secret)(text) if secret else text


def _error_fields(body: bytes) -> dict[str, Any] | None:
    """The ``{"error": {...}}`` object of an error body, or ``None`` if it has none."""
    try:
        data = loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error", data)
    return error if isinstance(error, dict) else None


def _text_field(fields: Mapping[str, Any], key: str) -> str | None:
    """``fields[key]`` as text: a string as it is, another value as its JSON; ``None`` if
    absent, or nested nearly as deep as the parser goes (writing it out again reaches
    the recursion limit): an optional field that cannot be read is dropped."""
    value = fields.get(key)
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except RecursionError:
        return None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None = None,
    result_file: bool = False,
) -> GPTunnelError:
    """The typed error for a non-2xx answer; the class is chosen by status alone.

    The body's ``message``, ``type``, ``param`` and ``code`` are used when it is JSON;
    otherwise the message is the shortened raw text. Every field is bounded in length and
    has ``secret`` masked, since all of them end up in the exception's text.
    ``result_file``: the answer is a storage host's, to a result download, whose 403,
    404 and 410 say the result has expired (:data:`RESULT_GONE`), not that ``base_url``
    is wrong.
    """
    fields = _error_fields(body) or {}

    def field(key: str, limit: int = SHORT_TEXT) -> str | None:
        value = _text_field(fields, key)
        return None if value is None else excerpt(value, secret, limit)

    message = field("message", _MESSAGE_TEXT) or excerpt(body, secret) or f"HTTP {status}"
    if status == 408:
        return APITimeoutError(f"408: {message}", status_code=408)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    cls = _ERRORS_BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(
        message,
        status_code=status,
        type=field("type"),
        param=field("param"),
        code=field("code"),
        retry_after=retry_after,
        hint=_hint_for(status, fields, result_file=result_file)
        or _redirect_hint(status, headers, secret, result_file=result_file),
    )


def _hint_for(status: int, fields: Mapping[str, Any], *, result_file: bool) -> str | None:
    """What an error's text adds, in parentheses, for the reader to check."""
    if result_file:
        return _RESULT_HINTS.get(status)
    return _NO_ENDPOINT if status == 404 and not fields else None


def _redirect_hint(
    status: int, headers: Mapping[str, str], secret: str | None, *, result_file: bool
) -> str | None:
    """For an API answer that redirects (a 3xx with a ``Location``): where to, masked and
    bounded, and why the SDK stopped there. An ``http://`` ``base_url`` the server sends
    to ``https://``, or a moved API, otherwise read as a bare ``301: HTTP 301``."""
    location = headers.get("Location") if 300 <= status < 400 and not result_file else None
    if not location:
        return None
    return (
        f"a redirect to {excerpt(location, secret, SHORT_TEXT)!r}: API requests follow no "
        "redirect, so the key goes nowhere else; if the API has moved there, change "
        "base_url to match"
    )


def check_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None = None,
    result_file: bool = False,
) -> bytes:
    """The body of a 2xx answer, or the typed error for any other status.

    ``body`` is what the capped read got: at most ``MAX_ANSWER_BYTES + 1`` bytes. A
    2xx body over :data:`MAX_ANSWER_BYTES` is not a task object
    (:class:`ResponseDecodeError`); an error's message comes from the body's start.
    ``result_file`` is as :func:`error_from_response` takes it.
    """
    head = body[:MAX_ANSWER_BYTES]
    if not 200 <= status < 300:
        raise error_from_response(status, headers, head, secret=secret, result_file=result_file)
    if len(body) > MAX_ANSWER_BYTES:
        raise ResponseDecodeError(
            f"the answer is over {MAX_ANSWER_BYTES} bytes, far more than any task object",
            status_code=status,
            body=excerpt(head[:_MESSAGE_TEXT], secret),
        )
    return head


def _loads(body: bytes) -> Any:
    """``json.loads`` of a body, read as UTF-8 first: the encoding RFC 8259 requires, and
    quicker than letting ``json`` sniff it. A BOM, UTF-16 or UTF-32 still parse, on the
    second try, and so does an integer over Python's digit limit, read as an infinity
    (see ``_sansio.json_text``); a body that is not JSON raises ``ValueError``."""
    try:
        return json.loads(body.decode())
    except ValueError:  # UnicodeDecodeError, JSONDecodeError, or an over-long integer
        return loads(body)


def decode_json_object(
    body: bytes, *, status_code: int | None = None, secret: str | None = None
) -> dict[str, Any]:
    """A 2xx body parsed as a JSON object, or :class:`ResponseDecodeError`.

    The error's ``body`` excerpt has ``secret`` masked, like every error text, and it is
    raised outside the ``except`` block: the parser's own error would stay attached as
    ``__context__``, holding the whole body, key and all.
    """
    try:
        data = _loads(body)
    except (ValueError, RecursionError) as exc:
        problem = f"the answer is not JSON: {exc}"
    else:
        if isinstance(data, dict):
            return data
        problem = f"expected a JSON object, got {type(data).__name__}"
    raise ResponseDecodeError(problem, status_code=status_code, body=excerpt(body, secret))


def structure(
    cls: type[M], data: Any, status_code: int | None = None, *, secret: str | None = None
) -> M:
    """A parsed JSON value as a ``cls`` model, or :class:`ResponseDecodeError`.

    ``secret`` is masked in the error's text. The error is raised outside the ``except``
    block for the reason :func:`decode_json_object` gives.
    """
    if not isinstance(data, dict):
        raise ResponseDecodeError(
            f"expected a {cls.__name__} object, got {type(data).__name__}",
            status_code=status_code,
        )
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        detail = "; ".join(cattrs.transform_error(exc))
    except UnreadableFieldError as exc:
        detail = str(exc)
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        detail = repr(exc)
    detail += _served_error(data)
    raise ResponseDecodeError(
        f"the answer is not a {cls.__name__} object: {excerpt(detail, secret)}",
        status_code=status_code,
        body=excerpt(json.dumps(data, ensure_ascii=False, default=str), secret),
    )


def _served_error(data: Mapping[str, Any]) -> str:
    """What an answer with no ``id`` says, if it is the API's error object sent with a
    2xx status: its message and type, for the error's text (else nothing)."""
    served = data.get("error") if "id" not in data else None
    if not isinstance(served, dict) or not isinstance(served.get("message"), str):
        return ""
    kind = served.get("type")
    return f"; it is an API error: {served['message']!r}" + (
        f" ({kind})" if isinstance(kind, str) else ""
    )


def masked(model: M, body: bytes, secret: str | None) -> M:
    """``model`` with ``secret`` masked in every text it holds, if ``body`` may hold it.

    The server may echo the key into any field (an id, a status, a URL); masking it here,
    once, keeps it out of everything derived from the model: exception texts, log lines,
    reprs, the command line's output. Most bodies are cleared by one quick look; one with
    an escaped backslash (``\\\\``) is not, since its texts may read as an escape the
    raw body does not (``"\\\\u0041"`` holds the text ``\\u0041``, a variation of ``A``).
    """
    if not secret:
        return model
    mask = mask_for(secret)
    text = body_text(body)  # a UTF-16 or UTF-32 body's key whole too
    if not mask.might_hold(text) and "\\\\" not in text:
        return model
    cleared: M = _masked_texts(model, mask)
    return cleared


def secret_masked(value: V, secret: str) -> V:
    """``value`` (a model, a tuple of them, a text) with ``secret`` masked in every text
    it holds, whatever body it came from: a webhook's token in the task a create call
    returns, a secret in the models an error keeps (its task, its validation issues)."""
    cleared: V = _masked_texts(value, mask_for(secret))
    return cleared


def _masked_texts(value: Any, mask: SecretMask) -> Any:
    """``value`` (a model, a tuple, a text) with ``mask`` applied to every text in it."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, tuple):
        return tuple(_masked_texts(item, mask) for item in value)
    if attrs.has(type(value)):
        changes = {
            field.alias: _masked_texts(getattr(value, field.name), mask)
            for field in attrs.fields(type(value))
        }
        return attrs.evolve(value, **changes)
    return value


def decode_task(body: bytes, status_code: int | None = None, *, secret: str | None = None) -> Task:
    """A 2xx body as a :class:`Task`, or :class:`ResponseDecodeError` if it is not one."""
    data = decode_json_object(body, status_code=status_code, secret=secret)
    return masked(structure(Task, data, status_code, secret=secret), body, secret)


def decode_balance(
    body: bytes, status_code: int | None = None, *, secret: str | None = None
) -> Balance:
    """A 2xx body of ``/balance`` as a :class:`Balance`, or :class:`ResponseDecodeError`."""
    data = decode_json_object(body, status_code=status_code, secret=secret)
    return masked(structure(Balance, data, status_code, secret=secret), body, secret)


_MEDIA_MARKERS: Final = ("code", "model", "created_at", "url")
"""Fields only a ``/media`` answer has (every one carries ``code``)."""


def is_media_answer(data: Mapping[str, Any]) -> bool:
    """Whether a task object is a ``/media`` one, by its shape: not ``"object": "task"``
    (faceswap, bgremover and Midjourney tasks say so), and a field only media answers
    have, or a ``result`` that is a list of clips."""
    if data.get("object") == "task":
        return False
    return isinstance(data.get("result"), list) or any(key in data for key in _MEDIA_MARKERS)


def decode_any_task(
    body: bytes, status_code: int = 200, *, secret: str | None = None
) -> Task | MediaTask:
    """A 2xx body of any family: a :class:`MediaTask` if it has a media answer's shape
    (see :func:`is_media_answer`), else a :class:`Task`; errors as those decoders raise."""
    data = decode_json_object(body, status_code=status_code, secret=secret)
    decode = decode_media_task if is_media_answer(data) else decode_task
    return decode(body, status_code, secret=secret)


class Reading(Generic[L]):
    """``decode`` for an answer to a read of ``task_id``: an answer about another task is
    a :class:`ResponseDecodeError`, so it is never returned (a wait treats it as any
    answer that is not the task: transient until its deadline).

    An object rather than a closure, built once for all the reads of a wait: a closure
    per read made each of thousands of queued reads hold 270 bytes more.
    """

    __slots__ = ("_decode", "_task_id")

    def __init__(self, task_id: str, decode: Decoder[L]) -> None:
        self._task_id = task_id
        self._decode = decode

    def __call__(self, body: bytes, status_code: int, /, *, secret: str | None = None) -> L:
        task = self._decode(body, status_code, secret=secret)
        if task.id != self._task_id:
            if secret and task.id == mask_for(secret)(self._task_id):
                # A key shorter than the id, masked inside it: the task asked for after all.
                return attrs.evolve(task, id=self._task_id)  # type: ignore[misc]  # L is attrs
            raise ResponseDecodeError(
                f"asked for task {_quoted_id(self._task_id)}, the answer is about task "
                f"{_quoted_id(task.id)}",
                status_code=status_code,
                body=excerpt(body, secret),
            )
        return task


def _quoted_id(task_id: str, limit: int = 80) -> str:
    """A task id for a message as it is, in quotes: printable and cut to ``limit``, but
    not on one line as :func:`shorten` makes a text, since its blanks may be all that
    tells it from the id asked for (``'abc '`` and ``'abc'``)."""
    cut = "…" if len(task_id) > limit else ""
    return f"'{printable(task_id[:limit])}{cut}'"


reading = Reading
"""``reading(task_id, decode)``: the :class:`Reading` decoder of a read of ``task_id``."""


class Created(Generic[L]):
    """``decode`` for the answer to a create call: a task whose id is not a usable task
    id (blank, over 256 characters, a lone surrogate) is a :class:`ResponseDecodeError`.

    The same rule refuses a caller's id with ``ConfigurationError``; an id the server
    chose is the server's fault, so it is raised as an answer that is not what the
    endpoint returns (the command line's exit code 4, not a usage error). The task may
    have started: the error's ``body`` shows the answer.
    """

    __slots__ = ("_decode",)

    def __init__(self, decode: Decoder[L]) -> None:
        self._decode = decode

    def __call__(self, body: bytes, status_code: int, /, *, secret: str | None = None) -> L:
        task = self._decode(body, status_code, secret=secret)
        problem = task_id_problem(task.id)
        if problem is not None:
            raise ResponseDecodeError(
                f"the created task's id {problem}",  # the transport adds what that means
                status_code=status_code,
                body=excerpt(body, secret),
            )
        return task


def _media_code(value: Any) -> int | None:
    """A media ``code`` as an int (absent or null is 0; ``3.0`` is 3; ``"3"`` and ``"-1"``,
    ASCII digits with an optional minus, are 3 and -1), or ``None`` if it is not one
    (``" 3"``, ``"3_0"``, ``"٣"``)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():  # 3.0, as a JSON writer may put 3
        return int(value)
    if isinstance(value, str):
        magnitude = digits(value.removeprefix("-"))
        return None if magnitude is None else -magnitude if value.startswith("-") else magnitude
    return None


MAX_ISSUES: Final = 20
"""The most validation issues kept on an error: enough to fix a request, bounded
whatever the server sends."""


def _issue(item: Any, secret: str | None) -> ValidationIssue | None:
    """One entry of a code 3 answer's ``issues``, texts bounded and masked; ``None`` if it
    is not an object."""
    if not isinstance(item, dict):
        return None
    raw_path = item.get("path")
    path = tuple(
        part if isinstance(part, int) and not isinstance(part, bool) else excerpt(str(part), secret)
        for part in (raw_path if isinstance(raw_path, list) else [])
    )

    def text(key: str) -> str | None:
        value = _text_field(item, key)
        return None if value is None else excerpt(value, secret)

    return ValidationIssue(
        path=path[:MAX_ISSUES],
        message=text("message"),
        expected=text("expected"),
        received=text("received"),
        code=text("code"),
    )


def validation_issues(value: Any, secret: str | None = None) -> tuple[ValidationIssue, ...]:
    """The ``issues`` of a media validation error (code 3), at most :data:`MAX_ISSUES`;
    entries that are not objects are skipped."""
    if not isinstance(value, list):
        return ()
    found = (_issue(item, secret) for item in value[:MAX_ISSUES])
    return tuple(issue for issue in found if issue is not None)


def media_error(
    code: int, fields: Mapping[str, Any], status_code: int, *, secret: str | None = None
) -> APIError:
    """The typed error for a media answer with a non-zero ``code`` (see :data:`MEDIA_ERRORS`).

    A validation error's ``issues`` are kept on the error, and ``param`` is the first
    one's field; the message names it too.
    """
    cls, kind = MEDIA_ERRORS.get(code, (APIError, "media_error"))
    text = _text_field(fields, "message")
    message = excerpt(text, secret, _MESSAGE_TEXT) if text else kind.replace("_", " ")
    issues = validation_issues(fields.get("issues"), secret)
    first = issues[0] if issues else None
    if first is not None and first.field and first.message:
        message = shorten(f"{message} ({first.field}: {first.message})", _MESSAGE_TEXT)
    return cls(
        message,
        status_code=status_code,
        type=kind,
        param=first.field if first else None,
        code=str(code),
        issues=issues,
    )


def decode_media_task(
    body: bytes, status_code: int = 200, *, secret: str | None = None
) -> MediaTask:
    """A 2xx body of ``/media`` as a :class:`MediaTask`; a non-zero ``code`` raises its error.

    Raises:
        APIError: the subclass :data:`MEDIA_ERRORS` gives the code, ``code`` set.
        ResponseDecodeError: the body is not a media task.
    """
    data = decode_json_object(body, status_code=status_code, secret=secret)
    code = _media_code(data.get("code"))
    if code is None:
        raise ResponseDecodeError(
            f"the media answer's code is not a number: {excerpt(repr(data.get('code')), secret)}",
            status_code=status_code,
            body=excerpt(body, secret),
        )
    if code != 0:
        raise media_error(code, data, status_code, secret=secret)
    # The reason of a failure: ``message`` as documented, else ``error``, where public
    # clients read it (a media failure's shape is not documented).
    reason = data.get("message") or data.get("error")
    fields = {**data, "code": 0, "message": reason}
    model = structure(MediaTask, fields, status_code, secret=secret)
    return masked(model, body, secret)
