"""The one way every task family reads a task and waits for it.

A family is a ``TaskResource`` subclass that declares a ``Family`` (where its
tasks are read, how its answers decode) and adds its own create calls; reading, waiting,
retries and errors all come from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Literal, TypeVar, overload

import attrs

from ._many import AsCompleted, wait_many
from ._polling import POLICY_TIMEOUT, PollPolicy, ProgressCallback, TaskWaiter
from ._transport import Decoder, Transport
from .errors import ConfigurationError, GPTunnelError
from .instrumentation._hooks import family_of
from .models import TaskLike

__all__ = ["Family", "TaskResource", "check_task_id", "check_text"]

T = TypeVar("T", bound=TaskLike)


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a non-blank string; anything else fails before any request."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_task_id(value: str) -> str:
    """``value`` if it is a usable task id; blank or non-string ids fail before any request.

    An id that is not valid Unicode (a lone surrogate) fails too: URL encoding would
    silently drop those characters and ask for another task.
    """
    check_text("task_id", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"task_id is not valid Unicode: {value!r}") from None
    return value


@attrs.frozen
class Family(Generic[T]):
    """What sets one task family apart: where its tasks are read and how answers decode.

    ``decode`` turns every 2xx answer of the family (creates and reads) into its task
    model, or raises the typed error the body carries.
    """

    result_path: str
    decode: Decoder[T]
    id_param: str = "taskId"


class TaskResource(Generic[T]):
    """Reading a task and waiting for it: the same for every family.

    A subclass sets ``family`` and adds the family's create calls. The client builds
    one per family; reach them as ``client.faceswap``, ``client.media`` and so on.

    Args:
        transport: the client's way to send one request.
        default_policy: the client's current default [PollPolicy][].
    """

    family: Family[T]

    def __init__(self, transport: Transport, default_policy: Callable[[], PollPolicy]) -> None:
        self._transport = transport
        self._default_policy = default_policy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport.base_url}/{self.family.result_path}>"

    async def result(self, task_id: str) -> T:
        """Read the task's current state once, retrying transient failures.

        Args:
            task_id: the task to read.

        Returns:
            The task as it is now.

        Raises:
            ConfigurationError: ``task_id`` is empty or blank (nothing is sent).
            APIError: the typed error of an answer that is not retried, or the last one
                once the client's retries have failed too.
            APIConnectionError: the network failed, after the retries.
            ResponseDecodeError: the answer is not this family's task object.
            UsageError: the client is closed.
        """
        return await self._transport.request(
            "GET",
            self.family.result_path,
            self.family.decode,
            query=((self.family.id_param, check_task_id(task_id)),),
        )

    def wait_for_result(
        self,
        task_id: str,
        *,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[T] | None = None,
    ) -> TaskWaiter[T]:
        """Poll until the task is done: await it for the final task, or iterate its events.

        Args:
            task_id: the task to wait for.
            policy: pacing and deadline; defaults to the client's ``poll_policy``.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            A [TaskWaiter][]: await it for the done task, or iterate it for the
            [ProgressEvent][] of each change. Awaiting or iterating it raises
            ``TaskFailedError`` when the task fails, ``WaitTimeoutError`` when the
            deadline passes, and the ``APIError`` of a 400, 401, 402, 403 or 404.

        Raises:
            ConfigurationError: ``task_id`` is empty or blank.
        """
        checked_id = check_task_id(task_id)
        return TaskWaiter(
            checked_id,
            self.result,
            policy=policy or self._default_policy(),
            timeout=timeout,
            on_progress=on_progress,
            family=family_of(self.family.result_path),
        )

    @overload
    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsCompleted[T]: ...

    @overload
    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[True],
    ) -> AsCompleted[T | GPTunnelError]: ...

    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[T] | None = None,
        return_exceptions: bool = False,
    ) -> AsCompleted[Any]:
        """Wait for many tasks at once; iterate to get each as it finishes.

        Args:
            task_ids: the tasks to wait for (each id is checked before any request).
            policy: pacing and deadline of each wait, as for ``wait_for_result``.
            timeout: overrides the policy's deadline, for each wait.
            on_progress: called with every wait's [ProgressEvent][]s; may be async.
            return_exceptions: yield a failure as its exception instead of raising it.

        Returns:
            An [AsCompleted][gptunnel_async.AsCompleted]: an async iterator and an async
            context manager that cancels the waits still running when it ends.

        Raises:
            ConfigurationError: ``task_ids`` is one string, or holds a blank id.
        """
        waiters = self._waiters(task_ids, policy, timeout, on_progress)
        return AsCompleted(waiters, return_exceptions=return_exceptions)

    @overload
    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[T]: ...

    @overload
    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[True],
    ) -> list[T | GPTunnelError]: ...

    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[T] | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Wait for many tasks at once; return the finished tasks in the order given.

        Args:
            task_ids: the tasks to wait for (each id is checked before any request).
            policy: pacing and deadline of each wait, as for ``wait_for_result``.
            timeout: overrides the policy's deadline, for each wait.
            on_progress: called with every wait's [ProgressEvent][]s; may be async.
            return_exceptions: put a failure's exception in its place instead of raising.

        Returns:
            The done tasks (or, with ``return_exceptions``, their errors), in the order
            of ``task_ids``.

        Raises:
            ConfigurationError: ``task_ids`` is one string, or holds a blank id.
            GPTunnelError: without ``return_exceptions``, the first failure in the order
                given, once every wait has ended (no failure cancels another wait).
        """
        waiters = self._waiters(task_ids, policy, timeout, on_progress)
        return await wait_many(waiters, return_exceptions=return_exceptions)

    def _waiters(
        self,
        task_ids: Iterable[str],
        policy: PollPolicy | None,
        timeout: float | None,
        on_progress: ProgressCallback[T] | None,
    ) -> list[TaskWaiter[T]]:
        if isinstance(task_ids, str):
            raise ConfigurationError("task_ids must be a collection of ids, not one string")
        return [
            self.wait_for_result(task_id, policy=policy, timeout=timeout, on_progress=on_progress)
            for task_id in task_ids
        ]

    async def _create(self, path: str, payload: dict[str, Any]) -> T:
        """POST a new task; retried only where the server surely did not start one."""
        return await self._transport.request(
            "POST", path, self.family.decode, json=payload, idempotent=False
        )

    async def _until_done(
        self,
        created: Awaitable[T],
        policy: PollPolicy | None,
        timeout: float | None,
        on_progress: ProgressCallback[T] | None,
    ) -> T:
        """Await a create call, then wait for the task it started."""
        task = await created
        return await self.wait_for_result(
            task.id, policy=policy, timeout=timeout, on_progress=on_progress
        )
