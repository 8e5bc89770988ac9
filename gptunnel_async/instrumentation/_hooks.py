"""The hook interface: what the SDK reports, the hooks that receive it, and the dispatch.

The call sites (the transport for requests and retries, the waiter for waits and their
progress) call the ``emit_*`` functions below only when a hook listens to that kind of
report, so an SDK with no such hook pays one attribute check a request.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._checks import callable_as, describe, plain_function
from .._logging import log_with_fields, logger
from ..errors import APIConnectionError, ConfigurationError, GPTunnelError

__all__ = [
    "Hook",
    "LoggingHook",
    "ProgressDetails",
    "RequestDetails",
    "RetryDetails",
    "WaitFinished",
    "WaitOutcome",
    "WaitStarted",
    "get_hooks",
    "set_hooks",
]


@attrs.frozen
class RequestDetails:
    """One HTTP request to the API, answered or not (each retry is a request of its own).

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        path: the URL's path, e.g. ``"/v1/faceswap/result"``.
        family: the task family the path belongs to (``"faceswap"``, ``"bgremover"``,
            ``"midjourney"``, ``"media"``), or the path's first part for others.
        task_id: the task read, for a result read; else ``None``.
        status_code: the HTTP status, or ``None`` when no answer came (network, timeout).
        error: the name of the error class the request ended with (``"ServerError"``,
            ``"APIConnectionError"`` ...), or ``None`` when it succeeded.
        started_at: when it started, in seconds since the epoch (``time.time()``).
        duration: how long it took, in seconds, from sending to the whole answer read.
    """

    method: str
    path: str
    family: str
    task_id: str | None
    status_code: int | None
    error: str | None
    started_at: float
    duration: float


@attrs.frozen
class RetryDetails:
    """A failed attempt that will be tried again after ``wait`` seconds.

    Attributes:
        scope: ``"request"`` for a request retried by the client's ``max_retries``,
            ``"wait"`` for a read a wait will make again at its next poll.
        what: the request, e.g. ``"GET /v1/faceswap/result"``.
        family: the task family (see
            [RequestDetails][gptunnel_async.instrumentation.RequestDetails]).
        task_id: the task, for a wait's read; else ``None``.
        attempt: for a request, 1 for the first retry, 2 for the second ...; for a
            wait, the number of the read that failed.
        wait: seconds until the next attempt.
        error: the error of the failed attempt (it never holds the key).
        status_code: its HTTP status (429, 503 ...), or ``None`` without one.
    """

    scope: Literal["request", "wait"]
    what: str
    family: str
    task_id: str | None
    attempt: int
    wait: float
    error: GPTunnelError
    status_code: int | None


@attrs.frozen
class WaitStarted:
    """A wait started reading a task.

    Attributes:
        task_id: the task waited for.
        family: its task family.
        timeout: the wait's deadline in seconds, or ``None`` for none.
        wait_id: this wait among those of the process running now, as the other
            records of the wait give it: two waits on one task can overlap.
    """

    task_id: str
    family: str
    timeout: float | None
    wait_id: int = 0


@attrs.frozen
class ProgressDetails:
    """A progress event of a wait (see [ProgressEvent][gptunnel_async.ProgressEvent]).

    Attributes:
        task_id: the task waited for.
        family: its task family.
        status: the task's status (at most 100 characters: the server's text, cut).
        percent: 0 to 100.
        elapsed: seconds since the wait began.
        wait_id: the wait's, as in its [WaitStarted][gptunnel_async.instrumentation.WaitStarted].
    """

    task_id: str
    family: str
    status: str
    percent: int
    elapsed: float
    wait_id: int = 0


WaitOutcome: TypeAlias = Literal["done", "failed", "timeout", "error", "cancelled"]
"""How a wait ended: the task done or failed, the deadline passed, an error that is not
the task's (401, 404 ...), or the wait cancelled or closed early."""


@attrs.frozen
class WaitFinished:
    """A wait ended, whichever way.

    Attributes:
        task_id: the task waited for.
        family: its task family.
        outcome: how it ended.
        status: the task's last status read (at most 100 characters: the server's
            text, cut), or ``None`` if no read succeeded.
        duration: seconds from the wait's start to its end.
        reads: how many reads it made, failed ones included (a read that the client
            retried counts once; each attempt is a request of its own).
        error: the name of the error class it raised, or ``None``.
        wait_id: the wait's, as in its [WaitStarted][gptunnel_async.instrumentation.WaitStarted].
    """

    task_id: str
    family: str
    outcome: WaitOutcome
    status: str | None
    duration: float
    reads: int
    error: str | None
    wait_id: int = 0


class Hook:
    """Receives what the SDK does. Subclass it and override the methods you need; the
    others do nothing and cost nothing (a method left as it is here is never called).

    Hooks run inline, on the event loop, and are not awaited: keep them quick, and make
    them plain methods (``set_hooks`` refuses an ``async def`` one, whose body would
    never run; for async work, put the details on a queue of your own). An exception a
    hook raises is logged and otherwise ignored, so a broken metric never breaks a wait.
    No report holds the API key.
    """

    def on_request(self, details: RequestDetails) -> None:
        """After each HTTP request to the API (not to the storage host)."""

    def on_retry(self, details: RetryDetails) -> None:
        """Before the pause ahead of each retry, of a request or of a wait's read."""

    def on_wait_started(self, details: WaitStarted) -> None:
        """When a wait starts, before its first read."""

    def on_progress(self, details: ProgressDetails) -> None:
        """For each progress event of a wait, before ``on_progress`` callbacks see it."""

    def on_wait_finished(self, details: WaitFinished) -> None:
        """When a wait ends: done, failed, timed out, stopped by an error or cancelled."""


def _names_its_request(error: GPTunnelError) -> bool:
    """Whether ``error``'s text starts with its request's label, as every failure on the
    wire does (the label of a download on the API's own origin is shorter than the
    retry's ``what``); a server's answer, a 408 included, does not."""
    return isinstance(error, APIConnectionError) and getattr(error, "status_code", None) is None


class LoggingHook(Hook):
    """The default hook: a WARNING per retry on the ``gptunnel_async`` logger, saying what
    failed, why, and when it is tried again.

    It listens to nothing else, so by default requests and waits are not timed at all.
    (Each read's DEBUG line comes from the wait itself.)
    """

    def on_retry(self, details: RetryDetails) -> None:
        fields = _retry_fields(details)
        if details.scope == "wait":
            log_with_fields(
                logger,
                logging.WARNING,
                "task %s: read failed (%s); polling again in %.2fs",
                *(details.task_id, details.error, details.wait),
                fields=fields,
            )
            return
        reason = str(details.error)
        if not (reason.startswith(details.what) or _names_its_request(details.error)):
            reason = f"{details.what} failed ({reason})"
        # Many waits at once: the URL alone does not say which (its query is not shown).
        task = "" if details.task_id is None else f" (task {details.task_id})"
        log_with_fields(
            logger,
            logging.WARNING,
            "%s; retry %d in %.2fs%s",
            *(reason, details.attempt, details.wait, task),
            fields=fields,
        )


def _retry_fields(details: RetryDetails) -> dict[str, object]:
    """The structured fields of a retry's log record (``record.task_id`` ...), for a JSON
    log formatter: the SDK's own values, none of them server text."""
    return {
        "task_id": details.task_id,
        "family": details.family,
        "scope": details.scope,
        "attempt": details.attempt,
        "retry_in": details.wait,
        "status_code": details.status_code,
        "error_type": type(details.error).__name__,
    }


@attrs.define
class _Dispatch:
    """The bound methods of the hooks that override each one, in the order set."""

    request: tuple[Callable[[RequestDetails], None], ...] = ()
    retry: tuple[Callable[[RetryDetails], None], ...] = ()
    wait_started: tuple[Callable[[WaitStarted], None], ...] = ()
    progress: tuple[Callable[[ProgressDetails], None], ...] = ()
    wait_finished: tuple[Callable[[WaitFinished], None], ...] = ()
    hooks: tuple[Hook, ...] = ()


_METHODS: Final = {
    "request": "on_request",
    "retry": "on_retry",
    "wait_started": "on_wait_started",
    "progress": "on_progress",
    "wait_finished": "on_wait_finished",
}

LISTENING: Final = _Dispatch()
"""What is listening now; the call sites check ``LISTENING.request`` and so on."""


def set_hooks(hooks: Iterable[Hook]) -> None:
    """Replace the hooks every client reports to (the default is ``[LoggingHook()]``).

    Pass ``[]`` for none, or keep logging beside your own:
    ``set_hooks([LoggingHook(), PrometheusHook()])``.

    Args:
        hooks: [Hook][gptunnel_async.instrumentation.Hook] instances, called in order.

    Raises:
        ConfigurationError: ``hooks`` is not an iterable of ``Hook`` instances (a single
            hook included: pass ``[hook]``), or a hook's ``on_*`` method is an
            ``async def`` (or a generator) or not callable. Nothing is set then.
    """
    if not isinstance(hooks, Iterable):
        raise ConfigurationError(f"hooks must be a list of Hook instances, got {describe(hooks)}")
    chosen = tuple(hooks)
    for hook in chosen:
        if not isinstance(hook, Hook):
            raise ConfigurationError(
                f"a hook must be a gptunnel_async.instrumentation.Hook, got {describe(hook)}"
            )
    listening = {
        kind: tuple(
            _checked(hook, method)
            for hook in chosen
            if getattr(type(hook), method) is not getattr(Hook, method)
        )
        for kind, method in _METHODS.items()
    }
    for kind, methods in listening.items():
        setattr(LISTENING, kind, methods)
    LISTENING.hooks = chosen


def _checked(hook: Hook, name: str) -> Callable[[Any], None]:
    """``hook``'s method ``name``, which must be a plain function taking the details: the
    SDK calls it inline with them and awaits nothing; ``ConfigurationError`` otherwise
    (a method of no argument failed at each call, logged as the hook failing)."""
    where = f"{type(hook).__qualname__}.{name}"
    try:
        method = plain_function(where, getattr(hook, name))
        return callable_as(where, method, (None,), f"{where}(details)")  # type: ignore[no-any-return]
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{exc}; hooks run inline on the event loop: for async work, hand the details "
            "to a task or a queue of your own (asyncio.Queue.put_nowait)"
        ) from None


def get_hooks() -> tuple[Hook, ...]:
    """The hooks set now, in order.

    Returns:
        The hooks, as given to [set_hooks][gptunnel_async.instrumentation.set_hooks].
    """
    return LISTENING.hooks


def _call(methods: tuple[Callable[[Any], None], ...], details: object) -> None:
    """Call each hook method with ``details``; one that raises is logged and skipped.

    A ``CancelledError`` is such an error too (a cancelled future of the hook's own,
    whose ``result()`` it read): a hook runs inline and awaits nothing, so no
    cancellation of the running task ever reaches it, and raised on, it would end the
    wait as cancelled though nothing cancelled it."""
    for method in methods:
        try:
            returned: object = method(details)
        except (Exception, asyncio.CancelledError):
            logger.exception("the instrumentation hook %r failed", method)
            continue
        if returned is not None:  # an async method set_hooks could not tell (a wrapper's)
            _not_run(method, returned)


def _not_run(method: Callable[[Any], None], returned: object) -> None:
    """Log a hook that returned something to run (a coroutine, a generator) rather than
    running, which it then closes (no "never awaited" warning later, far from here).

    Only a body that has not started is such a thing: a task or future the hook handed
    its work to (``asyncio.ensure_future(...)``) runs already, and is not the hook's to
    close, as no other awaitable it returns is."""
    if not (
        inspect.iscoroutine(returned)
        or inspect.isgenerator(returned)
        or inspect.isasyncgen(returned)
    ):
        return
    close = getattr(returned, "close", None)
    if callable(close):
        close()
    logger.error(
        "the instrumentation hook %r returned %s rather than running: hooks are called "
        "inline and not awaited, so its body did not run; make it a plain method",
        method,
        describe(returned),
    )


def emit_request(details: RequestDetails) -> None:
    """Tell the hooks about a request."""
    _call(LISTENING.request, details)


def emit_retry(details: RetryDetails) -> None:
    """Tell the hooks about a retry."""
    _call(LISTENING.retry, details)


def emit_wait_started(details: WaitStarted) -> None:
    """Tell the hooks a wait started."""
    _call(LISTENING.wait_started, details)


def emit_progress(details: ProgressDetails) -> None:
    """Tell the hooks about a progress event."""
    _call(LISTENING.progress, details)


def emit_wait_finished(details: WaitFinished) -> None:
    """Tell the hooks a wait ended."""
    _call(LISTENING.wait_finished, details)


def family_of(path: str) -> str:
    """The task family of an API path: ``"faceswap/result"`` -> ``"faceswap"``.

    Interned: each of thousands of waits keeps its family's name, once for all of them.
    """
    return sys.intern(path.strip("/").partition("/")[0])


set_hooks([LoggingHook()])
