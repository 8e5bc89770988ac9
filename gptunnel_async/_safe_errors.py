"""Exceptions made safe to keep, log and render anywhere: no frames, no key, bounded texts.

An error the SDK raises keeps the failure under it as ``__cause__`` for debugging. That
chain is rendered by ``traceback`` (with ``capture_locals``), ``logging.exception``,
error trackers and ``pytest -l``; so before it leaves, every exception in it loses its
frames (aiohttp's hold the request headers, key included, as locals), the request
headers some aiohttp errors keep, and every text it keeps is masked (aiohttp quotes the
bytes of an answer it could not parse: a status line, a header, a chunk size, a
redirect target) and bounded.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, Final, ParamSpec, TypeVar, cast

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._sansio.responses import secret_masked
from ._sansio.text import excerpt, mask_for
from .errors import GPTunnelError

__all__ = ["MaskedCause", "made_safe", "secret_arguments", "without_frames"]

E = TypeVar("E", bound=BaseException)
P = ParamSpec("P")
R = TypeVar("R")

_CAUSE_TEXT: Final = 300
"""The longest text kept by an exception chained under the SDK's own, in characters."""


def without_frames(exc: E) -> E:
    """``exc`` and its chain with their tracebacks detached (see :func:`made_safe`)."""
    for current in _chain(exc):
        current.__traceback__ = None
    return exc


def secret_arguments(func: Callable[P, R]) -> Callable[P, R]:
    """``func``, whose errors leave from a frame that holds none of its arguments.

    For the calls given the API key or a webhook secret (a client's or a receiver's
    constructor, ``parse_webhook``, a create call given a ``webhook`` URL with its
    token, and a coroutine function's awaited errors alike): each frame they run holds
    those as locals, the
    call's own frame as its parameters, and error trackers, ``rich``, ``pytest -l`` and
    ``traceback`` with ``capture_locals`` render the locals of every frame of a
    traceback. An error raised inside (bad arguments, a wrong token, a bad body) loses
    the frames below this wrapper, as do the exceptions the call chained to it (the
    caller's own, which it may have been handling, are left as they are), and is raised
    again from here once the arguments are dropped: the same exception, its text and
    its chain intact. So does a cancellation (``asyncio.wait_for`` or ``asyncio.timeout``
    around the call: the ``TimeoutError`` they raise chains it) or a ``KeyboardInterrupt``.
    """

    if inspect.iscoroutinefunction(func):
        return cast(Callable[P, R], _secret_arguments_awaited(func))

    @functools.wraps(func)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        handled = sys.exception()  # the caller's, if it calls from an ``except`` block
        try:
            return func(*args, **kwargs)
        except BaseException as exc:  # KeyboardInterrupt too: its frames hold the same
            _forget_frames(exc, handled)
            del args, kwargs, handled
            raise  # from this frame alone: ``exc`` keeps its chain, as it was raised

    return guarded


def _secret_arguments_awaited(func: Callable[P, Any]) -> Callable[P, Any]:
    """:func:`secret_arguments` of a coroutine function."""

    @functools.wraps(func)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
        handled = sys.exception()
        try:
            return await func(*args, **kwargs)
        except BaseException as exc:  # a cancellation too: a timeout around a create
            _forget_frames(exc, handled)
            del args, kwargs, handled
            raise

    return guarded


def _forget_frames(exc: BaseException, handled: BaseException | None) -> None:
    """Detach the tracebacks of ``exc`` and its chain, down to the caller's ``handled``."""
    for current in _chain(exc, stop=handled):
        current.__traceback__ = None


def made_safe(exc: BaseException, secret: str | None) -> BaseException:
    """``exc`` and every exception chained to it, made safe: returns ``exc`` (changed in
    place), or a :class:`MaskedCause` in its stead (never for the SDK's own errors).

    - Tracebacks are detached: a traceback cannot be copied without its frames, and
      clearing a frame in place can finalise a coroutine that is still suspended, so it
      goes as a whole. This also breaks the exception -> frame -> exception cycles the
      collector would otherwise have to find.
    - aiohttp's request headers (the key) and response headers are dropped; the URLs it
      keeps, its message and every other text attribute or argument are masked, and
      those of exceptions that are not the SDK's are cut to 300 characters.
    - An exception that still shows the key after that, in its text, its arguments or
      its attributes (its text is built from something else, such as aiohttp's
      connection key naming the host; an argument is no text, such as a dict) is
      replaced in the chain by a :class:`MaskedCause` with its type's name and its
      masked text.
    """
    safe = _scrubbed(exc, secret)
    pending: list[BaseException] = [safe]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for link in ("__cause__", "__context__"):
            below = getattr(current, link)
            if below is not None:
                below = _scrubbed(below, secret)
                setattr(current, link, below)
                pending.append(below)
    return safe


class MaskedCause(Exception):
    """Stands in an SDK error's chain for an exception whose own text would show the
    key: ``"<its type's qualified name>: <its text, masked>"``."""


def _scrubbed(exc: BaseException, secret: str | None) -> BaseException:
    """``exc`` with no frames and its texts masked in place, or its stand-in."""
    exc.__traceback__ = None
    if isinstance(exc, aiohttp.ClientResponseError):
        _forget_headers(exc, secret)
    _mask_attributes(exc, secret)
    if secret is None or isinstance(exc, GPTunnelError):
        return exc
    shown = f"{exc!s} {exc!r} {exc.args!r} {vars(exc)!r}"
    if not mask_for(secret).shows(shown):
        return exc
    stand_in = MaskedCause(excerpt(f"{type(exc).__qualname__}: {exc}", secret, _CAUSE_TEXT))
    stand_in.__cause__, stand_in.__context__ = exc.__cause__, exc.__context__
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in


def _mask_attributes(exc: BaseException, secret: str | None) -> None:
    """Mask ``secret`` in place in ``exc``'s arguments and text attributes (cut to 300
    characters in an exception not the SDK's), and in the models an SDK error keeps
    (its task, its validation issues)."""
    own = isinstance(exc, GPTunnelError)
    limit = None if own else _CAUSE_TEXT
    exc.args = tuple(_safe_text(arg, secret, limit) for arg in exc.args)
    for name, value in vars(exc).items():
        if isinstance(value, str):
            setattr(exc, name, _safe_text(value, secret, limit))
        elif secret and own and _holds_models(value):
            setattr(exc, name, secret_masked(value, secret))


def _holds_models(value: object) -> bool:
    """Whether ``value`` is one of the SDK's models, or a plain tuple of them (an
    error's task, its validation issues)."""
    if type(value) is tuple:
        return any(attrs.has(type(item)) for item in value)
    return attrs.has(type(value))


def _chain(exc: BaseException, stop: BaseException | None = None) -> list[BaseException]:
    """``exc`` and every exception reachable through ``__cause__`` and ``__context__``,
    short of ``stop`` (and what is chained to it)."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set() if stop is None else {id(stop)}
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        pending += (current.__cause__, current.__context__)
    return found


def _safe_text(value: object, secret: str | None, limit: int | None) -> object:
    """A text masked (and cut to ``limit``); anything else as it is."""
    if not isinstance(value, str):
        return value
    if limit is not None:
        return excerpt(value, secret, limit)
    return mask_for(secret)(value) if secret else value


def _forget_headers(exc: aiohttp.ClientResponseError, secret: str | None) -> None:
    """Drop the request headers (the key) and the response's (server text) an aiohttp
    error keeps, and mask the URLs it names (a redirect target is server text), each
    without its user name, password, query and fragment: a signed result link's query
    (``X-Amz-Signature=...``) is a credential, and aiohttp's text shows the URL."""
    info = exc.request_info
    headers = CIMultiDict(info.headers)
    headers.popall("Authorization", None)
    exc.request_info = aiohttp.RequestInfo(
        _safe_url(_bare(info.url), secret),
        info.method,
        CIMultiDictProxy(headers),
        _safe_url(_bare(info.real_url), secret),
    )
    exc.headers = None
    exc.history = ()
    exc.args = (exc.request_info, exc.history)  # aiohttp keeps both there too


def _bare(url: URL) -> URL:
    """``url`` without user name, password, query and fragment (as it is if relative)."""
    if not url.is_absolute():
        return url.with_query(None).with_fragment(None)
    return url.with_user(None).with_query(None).with_fragment(None)


def _safe_url(url: URL, secret: str | None) -> URL:
    """``url``, or its text masked if it holds the key (no longer a URL one can fetch)."""
    text = str(url)
    shown = excerpt(text, secret, _CAUSE_TEXT)
    return url if shown == text else URL(shown, encoded=True)
