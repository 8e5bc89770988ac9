"""Argument checks shared by every call: each fails with ``ConfigurationError`` (a
``ValueError``) before any request is sent, so a typo never costs a paid task.

The client, ``PollPolicy``, downloads, webhooks and the command line check their
options here and nowhere else: a number is an ``int`` or ``float`` (never a ``bool`` or
a string), finite once it is a float (``10**400`` is refused, not an ``OverflowError``),
and within its range; a URL is an absolute http(s) URL that parses.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePath
from typing import Any, Final, TypeVar

from yarl import URL

from ._sansio.text import mask_for
from .errors import ConfigurationError, GPTunnelError

__all__ = [
    "A_DAY",
    "MAX_TASK_ID_LENGTH",
    "MAX_WEBHOOK_URL_LENGTH",
    "async_redis",
    "check_task_id",
    "check_text",
    "count",
    "describe",
    "describe_url",
    "function",
    "http_url",
    "implements",
    "instance_of",
    "json_values",
    "missing_methods",
    "number",
    "optional",
    "pause_within_a_day",
    "positive_number",
    "seconds_within_a_day",
    "task_id_problem",
    "text",
    "valid_unicode",
    "webhook_url",
]

T = TypeVar("T")

MAX_TASK_ID_LENGTH: Final = 256
"""The longest task id sent: GPTunnel's are 24 to 36 characters, so 256 is generous."""

MAX_WEBHOOK_URL_LENGTH: Final = 2048
"""The longest ``webhook=`` URL sent, in characters: the length browsers and most
servers accept; a callback URL with its token is about 100."""

_SHOWN: Final = 80
"""How much of a refused value an error message shows."""


def describe(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters, for error messages; a path shows
    as its quoted text (``'songs'``, not ``PosixPath('songs')``)."""
    try:
        text = repr(os.fspath(value) if isinstance(value, PurePath) else value)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def describe_not_text(value: Any) -> str:
    """A value given where text is asked for, for the refusal's message: as
    :func:`describe` shows it, but a path with its type too (``a PosixPath ('flux')``):
    shown as its quoted text alone, it would read as the very text asked for."""
    if isinstance(value, PurePath):
        return f"a {type(value).__name__} ({describe(value)})"
    return describe(value)


def number(
    name: str,
    value: Any,
    requirement: str = "a finite number",
    test: Callable[[float], bool] = lambda _: True,
) -> float:
    """``value`` as a finite ``float`` that passes ``test``; ``ConfigurationError`` otherwise.

    ``requirement`` says what ``test`` asks, for the error message.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be {requirement}, got {describe(value)}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond the float range
        result = math.inf
    if not (math.isfinite(result) and test(result)):
        raise ConfigurationError(f"{name} must be {requirement}, got {describe(value)}")
    return result


def positive_number(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` above 0 (seconds, a rate); ``ConfigurationError`` else."""
    return number(name, value, "a finite number > 0", lambda v: v > 0)


A_DAY: Final = 24 * 3600.0
"""The longest interval or timeout an argument may give, in seconds (as a poll
interval, a fleet's ``lease`` and ``delivery_timeout`` are bounded): a longer one is a
unit mistake (milliseconds, ``1e300``) that would silently hold events or a stalled
request practically forever."""


def seconds_within_a_day(name: str, value: Any) -> float:
    """``value`` as seconds above 0 and at most :data:`A_DAY` (a timeout);
    ``ConfigurationError`` naming the bound otherwise."""
    return number(name, value, "a finite number of seconds > 0, at most a day (86400)", _timeout)


def _timeout(seconds: float) -> bool:
    return 0 < seconds <= A_DAY


def pause_within_a_day(name: str, value: Any) -> float:
    """``value`` as seconds from 0 to :data:`A_DAY` (an interval that may be none);
    ``ConfigurationError`` naming the bound otherwise."""
    return number(name, value, "a finite number of seconds from 0 to a day (86400)", _pause)


def _pause(seconds: float) -> bool:
    return 0 <= seconds <= A_DAY


MIN_REQUESTS_PER_SECOND: Final = 1 / 3600
"""The slowest rate a request budget may be given: one request an hour. Slower ones
lose their meaning in floating point once 429s slow them down further (a rate of
``5e-324`` halved is 0, and its interval infinite)."""


def request_rate(name: str, value: Any) -> float:
    """``value`` as requests per second, finite and at least
    :data:`MIN_REQUESTS_PER_SECOND`; ``ConfigurationError`` otherwise."""
    requirement = "a finite number of requests per second, at least 1/3600 (one an hour)"
    return number(name, value, requirement, lambda v: v >= MIN_REQUESTS_PER_SECOND)


def non_negative_number(name: str, value: Any, requirement: str = "a finite number >= 0") -> float:
    """``value`` as a finite ``float`` of 0 or more (seconds of a pause, say);
    ``ConfigurationError`` saying it must be ``requirement`` otherwise."""
    return number(name, value, requirement, _not_negative)


def _not_negative(value: float) -> bool:
    return value >= 0


def count(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` of at least ``minimum``; ``ConfigurationError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {describe(value)}")
    return int(value)


def port(name: str, value: Any) -> int:
    """``value`` as a TCP port, an ``int`` from 0 (any free one) to 65535;
    ``ConfigurationError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigurationError(
            f"{name} must be a port, an int from 0 (any free one) to 65535, got {describe(value)}"
        )
    return int(value)


def instance_of(cls: type) -> Callable[[str, Any], Any]:
    """A check that ``value`` is a ``cls``, for [optional][] and attrs-style use."""

    def check(name: str, value: Any) -> Any:
        if not isinstance(value, cls):
            raise ConfigurationError(f"{name} must be a {cls.__qualname__}, got {describe(value)}")
        return value

    return check


def missing_methods(value: Any, methods: Iterable[str]) -> list[str]:
    """Which of ``methods`` ``value`` lacks, or has but cannot call."""
    return [method for method in methods if not callable(getattr(value, method, None))]


def implements(name: str, value: Any, what: str, methods: Iterable[str]) -> Any:
    """``value`` if it has every one of ``methods``, callable (a store, a client given
    by its interface); ``ConfigurationError`` saying it must be ``what`` otherwise."""
    missing = missing_methods(value, methods)
    if missing:
        raise ConfigurationError(
            f"{name} must be {what}, got {describe(value)} (it has no {missing[0]}())"
        )
    return value


def async_redis(name: str, value: Any) -> Any:
    """``value`` if it is an asyncio Redis client (``redis.asyncio.Redis``,
    ``RedisCluster``, or one alike: ``register_script`` and a coroutine
    ``execute_command``); ``ConfigurationError`` otherwise, a blocking ``redis.Redis``
    included."""
    what = "a redis.asyncio.Redis or RedisCluster client"
    implements(name, value, what, ("register_script", "execute_command"))
    if not inspect.iscoroutinefunction(value.execute_command):
        raise ConfigurationError(f"{name} must be {what} (asyncio), got {describe(value)}")
    return value


def json_values(name: str, value: T) -> T:
    """``value`` if it is made of JSON values only (no ``NaN`` or infinities, which JSON
    has not, no objects of other types, no nesting deeper than Python's recursion
    limit, no object key that is not a string); ``ConfigurationError`` otherwise,
    before a paid request is sent.

    Python's ``json`` writes a key ``1``, ``1.0``, ``True`` or ``None`` as the text
    ``"1"``, ``"1.0"``, ``"true"`` or ``"null"``: beside the same key as a string, the
    object would go out with that key twice, and the server would keep one of them.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigurationError(f"{name} must hold JSON values only: {reason}") from None
    for key in _keys_not_text(value):
        raise ConfigurationError(
            f"{name} must hold JSON values only: an object key must be a string, got "
            f"{describe(key)} (JSON would turn it into the text {json.dumps(key)!r})"
        )
    return value


def _keys_not_text(value: Any) -> Iterator[Any]:
    """The object keys in ``value`` (JSON values, without cycles) that are not strings;
    walked without recursion, as deep as ``json.dumps`` went."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            yield from (key for key in item if not isinstance(key, str))
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def function(name: str, value: Any) -> Any:
    """``value`` if it can be called; ``ConfigurationError`` otherwise, and for a
    generator function (a stray ``yield`` in it): called, it would return a generator
    that nobody iterates, and its body would silently never run."""
    if not callable(value):
        raise ConfigurationError(f"{name} must be a function, got {describe(value)}")
    if _is(_makes_generators, value):
        raise ConfigurationError(
            f"{name} must be a function or a coroutine function, got a generator "
            f"function {describe(value)} (a yield in it?): its body would never run"
        )
    return value


def one_argument_function(name: str, value: Any) -> Any:
    """``value`` if :func:`function` takes it and it can be called with one positional
    argument, as the SDK calls it (``on_progress(event)``); ``ConfigurationError``
    otherwise (see :func:`callable_as`)."""
    return callable_as(name, function(name, value), (None,), f"{name}(event)")


def callable_as(name: str, value: Any, arguments: tuple[Any, ...], call: str) -> Any:
    """``value`` if its signature takes ``arguments`` (by position), as the SDK calls it
    (``call``, for the message); ``ConfigurationError`` otherwise, when it is given
    rather than at its first call (a ``lambda: ...`` given as ``on_progress`` failed
    with a bare ``TypeError`` at the first event, after a read). A callable whose
    signature Python cannot read (some builtins) is taken as it is."""
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return value
    try:
        signature.bind(*arguments)
    except TypeError as exc:
        takes = {0: "no argument", 1: "one argument"}.get(len(arguments), "its arguments")
        raise ConfigurationError(
            f"{name} must take {takes}, as it is called ({call}), but {describe(value)} "
            f"cannot be called so: {exc}"
        ) from None
    return value


def plain_function(name: str, value: Any) -> Any:
    """``value`` if it can be called and is a plain function, whose result the SDK uses
    at once (a clock, an instrumentation hook); ``ConfigurationError`` for anything else,
    a coroutine function included: called and never awaited, its body would never run."""
    if not callable(value):
        raise ConfigurationError(f"{name} must be a function, got {describe(value)}")
    if _is(_makes_generators, value) or _is(inspect.iscoroutinefunction, value):
        raise ConfigurationError(
            f"{name} must be a plain function (def, not async def nor a generator), got "
            f"{describe(value)}: it is called and not awaited, so its body would never run"
        )
    return value


def clock(name: str, value: Any) -> Callable[[], float]:
    """``value``, a plain function (see :func:`plain_function`) giving the time in
    seconds, whose every reading is checked to be one: a finite real number;
    ``ConfigurationError`` otherwise, where it is read (``datetime.now`` gives a
    ``datetime``, which failed as a ``TypeError`` deep in the arithmetic).
    It is not read here: a test's clock may count its readings."""
    read = callable_as(name, plain_function(name, value), (), f"{name}()")

    def seconds() -> float:
        now = read()
        try:
            usable = isinstance(now, numbers.Real) and not isinstance(now, bool)
            time = float(now) if usable else math.nan
        except (OverflowError, TypeError, ValueError):  # an int beyond any float
            time = math.nan
        if not math.isfinite(time):
            raise ConfigurationError(
                f"{name} must give the time in seconds as a finite number, got "
                f"{describe(now)} from {describe(read)}"
            )
        return time

    return seconds


def _is(kind: Callable[[Any], bool], value: Any) -> bool:
    """Whether the function ``value`` is, or (for an object) its ``__call__``, is of
    ``kind`` (a function, a method and a partial are looked through)."""
    return kind(value) or kind(inspect.getattr_static(type(value), "__call__", None))


def _makes_generators(value: Any) -> bool:
    return inspect.isgeneratorfunction(value) or inspect.isasyncgenfunction(value)


def called_back(name: str, returned: T) -> T:
    """``returned``, what callback ``name`` gave back; ``ConfigurationError`` for a
    generator: the callback is a generator function that :func:`function` could not
    tell (one behind a decorator), and its body never ran."""
    if inspect.isgenerator(returned) or inspect.isasyncgen(returned):
        if inspect.isgenerator(returned):
            returned.close()
        raise ConfigurationError(
            f"{name} returned a generator rather than running (a yield in it?): its body "
            "never ran; make it a function or a coroutine function"
        )
    return returned


def optional(check: Callable[[str, Any], Any], name: str, value: Any) -> Any:
    """``None`` as it is; anything else through ``check(name, value)``."""
    return None if value is None else check(name, value)


def http_url(name: str, value: Any, *, error: type[GPTunnelError] = ConfigurationError) -> URL:
    """``value`` parsed, if it is an absolute http(s) URL with a host; ``error`` otherwise.

    ``error`` is ``ConfigurationError`` for a caller's argument, ``DownloadError`` for a
    URL the server sent.
    """
    if not isinstance(value, str | URL):
        raise error(f"{name} must be an http(s) URL, got {describe_url(value)}")
    try:
        url = URL(value)
        usable = url.scheme in ("http", "https") and bool(url.host) and url.port is not None
    except (TypeError, ValueError):  # yarl's parse errors, IDNA's UnicodeError included
        usable = False
    if not usable:
        raise error(f"{name} must be an absolute http(s) URL, got {describe_url(value)}")
    if not _host_name_usable(url):
        raise error(
            f"{name} must name a host that can be looked up (letters, digits, hyphens "
            f"and dots, labels of 1 to 63 characters), got {describe_url(value)}"
        )
    return url


_USERINFO: Final = re.compile(r"^([\x00-\x20]*(?:[^/\\?#:@]*:)?[/\\]*)[^/\\?#]*@")
"""The user and password of a URL's text (``scheme://user:password@``), parsed or not:
after any spaces or control characters before it (a URL parser skips them) and any
scheme, a well-formed one or not (``" htps:"``, ``"ht tps:"``)."""


def without_userinfo(text: str) -> str:
    """``text`` (a URL, maybe malformed) with its credentials shown as ``***``: a URL
    refused for its scheme or port must not quote the password (or key) it carries."""
    return _USERINFO.sub(r"\1***@", text)


def describe_url(value: Any) -> str:
    """A URL argument that is refused, as its error shows it: text (or a ``URL``) as
    :func:`describe` shows it, with its user and password as ``***``, masked before it
    is cut short (a cut inside a long password would show its start); ``None`` or a
    number as it is; anything else by its type alone (``bytes``, a list), which could
    hold a URL and its password too. Webhook tokens are the caller's to mask
    (:func:`hide_webhook_token`)."""
    if isinstance(value, str | URL):
        return describe(without_userinfo(str(value)))
    if value is None or isinstance(value, int | float):
        return describe(value)
    return f"a {type(value).__name__}"


_HOST_NAME: Final = re.compile(rb"[A-Za-z0-9_.-]+")
"""The characters of a host name once IDNA-encoded (an IPv6 address, which has ``:``,
is checked by the URL parser)."""


def _host_name_usable(url: URL) -> bool:
    """Whether the resolver can take ``url``'s host: it encodes the name as IDNA, which
    refuses an empty label (``a..b``) or one over 63 characters with a bare
    ``UnicodeError``, raised from inside aiohttp where no caller expects it; and a name
    with a character no host name has (``exa mple.com``, which the URL parser keeps)
    would fail only at its look-up, after a paid create had sent it."""
    host = url.raw_host or ""
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        return False
    return ":" in host or _HOST_NAME.fullmatch(encoded) is not None


def text(name: str, value: Any) -> str:
    """``value`` if it is a ``str``; ``ConfigurationError`` naming its type alone
    otherwise, never its value (a key or secret given as ``bytes`` is still one). The
    first check of every argument whose characters are checked next: ``b"..."`` would
    otherwise be refused for characters it may not hold. Bytes of any kind are told to
    be decoded (``.decode()``), the usual fix for a key read from a file or Redis."""
    if not isinstance(value, str):
        fix = ": decode it first (.decode())" if isinstance(value, bytes | bytearray) else ""
        raise ConfigurationError(f"{name} must be text (str), got {type(value).__name__}{fix}")
    return value


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a non-blank string; anything else fails before any request."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{name} must be a non-empty string, got {describe_not_text(value)}"
        )
    return value


def utf8_text(name: str, value: str) -> str:
    """``value`` if UTF-8 can encode it (no lone surrogate, as a name read from an
    environment that is not UTF-8 may hold): a Redis key or value is UTF-8 bytes;
    ``ConfigurationError`` otherwise."""
    if not _encodes(value):
        raise ConfigurationError(
            f"{name} must be text UTF-8 can encode (no lone surrogates), got {describe(value)}"
        )
    return value


def valid_unicode(value: T) -> T:
    """``value`` (a request body of JSON values) if every text in it, keys included, is
    valid Unicode; ``ConfigurationError`` naming the first field that holds a lone
    surrogate otherwise. Python reads bytes a command line, a file name or the
    environment hold in another encoding than UTF-8 as such (``\\udcff``); sent, they
    are escaped into the JSON and a paid task starts on text the server cannot read."""
    where = _not_unicode_in(value, "")
    if where is not None:
        raise ConfigurationError(
            f"{where or 'the body'} holds text that is not valid Unicode (a lone surrogate, "
            "as bytes in an encoding other than UTF-8 give: a command line, a file name): "
            "nothing was sent"
        )
    return value


def _not_unicode_in(value: Any, path: str) -> str | None:
    """Where in ``value`` (``path`` and the keys and indexes below it) a text holds a
    lone surrogate, or ``None``."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else path
    for inner, item in _members(value, path):
        found = _not_unicode_in(item, inner)
        if found is not None:
            return found
    return None


def _members(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Where each key and item inside ``value`` (a dict, list or tuple) is, and it."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path or "a key of the body", key
            yield (f"{path}.{key}" if path else str(key)), item
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item


def _encodes(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def webhook_url(name: str, value: Any) -> str:
    """``value`` if it is a URL GPTunnel can call back: an absolute http(s) URL with a
    host, of printable characters without whitespace, at most
    :data:`MAX_WEBHOOK_URL_LENGTH` characters; ``ConfigurationError`` otherwise, before
    the paid create it would go out with, its text showing the URL's ``token`` as
    ``***`` (a receiver's secret: whoever reads it can forge deliveries)."""
    try:
        return _webhook_url(name, value)
    except ConfigurationError as exc:
        refusal = str(exc)
    # Raised out here: the first refusal, whose text shows the token, is not its context.
    raise ConfigurationError(hide_webhook_token(refusal))


_TOKEN_IN_TEXT: Final = re.compile(r"(token=)[^&#\s'\"]+", re.IGNORECASE)
"""A ``token=`` query parameter's value, as a URL shown in a text carries it."""


def hide_webhook_token(text: str) -> str:
    """``text`` with the value of every ``token=`` in it (a webhook URL's secret) as ``***``."""
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


def _webhook_url(name: str, value: Any) -> str:
    if isinstance(value, str) and len(value) > MAX_WEBHOOK_URL_LENGTH:
        raise ConfigurationError(
            f"{name} is {len(value)} characters, over the {MAX_WEBHOOK_URL_LENGTH} a "
            f"webhook URL can have: {describe_url(value)}"
        )
    if isinstance(value, str) and not (value.isprintable() and value == "".join(value.split())):
        raise ConfigurationError(
            f"{name} must be a URL without control or whitespace characters, got "
            f"{describe_url(value)}"
        )
    http_url(name, value)
    return str(value)


WEBHOOK_TOKEN_PARAM: Final = "token"
"""The query parameter of a callback URL that holds a webhook receiver's secret."""


def webhook_token(url: str) -> str | None:
    """The secret a checked webhook URL carries in its ``token`` parameter, if any."""
    return URL(url).query.get(WEBHOOK_TOKEN_PARAM) or None


def task_id_problem(value: Any) -> str | None:
    """What makes ``value`` unusable as a task id (a phrase that follows its name), or
    ``None`` if it is usable.

    Blank, non-string or overlong ids are unusable: an id longer than
    :data:`MAX_TASK_ID_LENGTH` is refused rather than sent. So is an id that is not valid
    Unicode (a lone surrogate): URL encoding would silently drop those characters and
    ask for another task; and one with a control or other unprintable character (a
    newline pasted with it) or a space around it: GPTunnel's ids are hexadecimal, and
    the server would answer "not found".
    """
    if not isinstance(value, str) and isinstance(getattr(value, "id", None), str):
        return f"must be a task's id, a string: pass {type(value).__name__}.id, not the object"
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {describe_not_text(value)}"
    if len(value) > MAX_TASK_ID_LENGTH:
        return (
            f"is {len(value)} characters, over the {MAX_TASK_ID_LENGTH} a task id "
            f"can have: {describe(value)}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"is not valid Unicode: {describe(value)}"
    if not value.isprintable():
        return f"holds a control or other unprintable character: {describe(value)}"
    if value != value.strip():
        return f"has a space around it (pasted with the id?): {describe(value)}"
    return None


_KEY_LOOKED_FOR: Final = 12
"""The shortest key that a task id is checked not to hold: a shorter one (a test's
``"demo"``) may be a word of a real id; GPTunnel's keys are far longer."""


def check_task_id(value: str, secret: str | None = None) -> str:
    """``value`` if it is a usable task id given by the caller; ``ConfigurationError``
    (see :func:`task_id_problem`) before any request otherwise, and for an id that
    holds ``secret`` (the API key passed by mistake), which a task id is echoed into
    log lines and error texts that never show the key.

    An id the server sent is judged by the same rule, but its fault is the server's: see
    ``_sansio.responses.Created``.
    """
    problem = task_id_problem(value)  # its text shows the id: not raised if it holds the key
    holds_key = _holds_key(value, secret) or _holds_key(problem, secret)
    # This frame raises: it holds the key no longer (error trackers, ``rich`` and
    # ``traceback`` with ``capture_locals`` render every frame's locals).
    del secret
    if holds_key:
        problem = None
        raise ConfigurationError(
            "task_id holds the API key (not shown here): pass the id a create call returned"
        )
    if problem is not None:
        raise ConfigurationError(f"task_id {problem}")
    return value


def _holds_key(shown: object, secret: str | None) -> bool:
    """Whether ``shown`` (a task id, or its refusal's text, which quotes what was given
    instead: a ``Path`` or ``bytes`` of the key) is text that holds ``secret`` (the API
    key), if that is long enough to look for."""
    key = secret if secret is not None and len(secret) >= _KEY_LOOKED_FOR else None
    return key is not None and isinstance(shown, str) and mask_for(key).shows(shown)
