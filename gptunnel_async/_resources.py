"""Task families as resources on the client: each family is a few declarative lines over
one shared way to read a task and wait for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ._images import ImageInput, encode_image
from ._polling import POLICY_TIMEOUT, PollPolicy, ProgressCallback, TaskWaiter
from ._protocol import decode_task
from ._transport import Transport
from .errors import ConfigurationError
from .models import Task

__all__ = ["FaceSwap", "TaskResource", "check_task_id"]


def check_task_id(value: str) -> str:
    """``value`` if it is a usable task id; blank or non-string ids fail before any request.

    An id that is not valid Unicode (a lone surrogate) fails too: URL encoding would
    silently drop those characters and ask for another task.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"task_id must be a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"task_id is not valid Unicode: {value!r}") from None
    return value


class TaskResource:
    """Reading a task and waiting for it: the same for every family.

    A family sets ``result_path`` (and ``id_param`` if its query key differs).
    """

    result_path: ClassVar[str]
    id_param: ClassVar[str] = "taskId"

    def __init__(self, transport: Transport, default_policy: Callable[[], PollPolicy]) -> None:
        self._transport = transport
        self._default_policy = default_policy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport.base_url}/{self.result_path}>"

    async def result(self, task_id: str) -> Task:
        """Read the task's current state once, retrying transient failures."""
        status, body = await self._transport.request(
            "GET", self.result_path, params={self.id_param: check_task_id(task_id)}
        )
        return decode_task(body, status_code=status, secret=self._transport.secret)

    def wait_for_result(
        self,
        task_id: str,
        *,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback | None = None,
    ) -> TaskWaiter:
        """Poll until the task is done: await it for the final task, or iterate its events.

        Args:
            task_id: the task to wait for.
            policy: pacing and deadline; defaults to the client's ``poll_policy``.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each :class:`ProgressEvent`; may be async.

        Raises (on await or iteration):
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            APIError: a 400/401/402/403/404 or other error that is not retried.
        """
        checked_id = check_task_id(task_id)
        return TaskWaiter(
            checked_id,
            lambda: self.result(checked_id),
            policy=policy or self._default_policy(),
            timeout=timeout,
            on_progress=on_progress,
        )

    async def _create(self, path: str, payload: dict[str, Any]) -> Task:
        """POST a new task; retried only where the server surely did not start one."""
        status, body = await self._transport.request("POST", path, json=payload, idempotent=False)
        return decode_task(body, status_code=status, secret=self._transport.secret)


class FaceSwap(TaskResource):
    """``/faceswap``: put the face from one image onto the person in another."""

    result_path = "faceswap/result"

    async def create(
        self, source_image: ImageInput, face_image: ImageInput, *, webhook: str | None = None
    ) -> Task:
        """Start a face swap; images may be URLs, ``data:`` URIs, bytes or file paths."""
        payload: dict[str, Any] = {
            "sourceImage": await encode_image(source_image),
            "faceImage": await encode_image(face_image),
        }
        if webhook is not None:
            payload["webhook"] = webhook
        return await self._create("faceswap/create", payload)

    async def swap(
        self,
        source_image: ImageInput,
        face_image: ImageInput,
        *,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        """Start a face swap and wait for it: the finished task, ``result`` holding the URL."""
        task = await self.create(source_image, face_image)
        return await self.wait_for_result(
            task.id, policy=policy, timeout=timeout, on_progress=on_progress
        )
