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
    """``value`` if it is a usable task id; blank or non-string ids fail before any request."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"task_id must be a non-empty string, got {value!r}")
    return value


class TaskResource:
    """Reading a task and waiting for it: the same for every family.

    A family sets ``result_path`` (and ``id_param`` if its query key differs). The
    client builds one per family; reach them as ``client.faceswap`` and so on.

    Args:
        transport: the client's way to send one request.
        default_policy: the client's current default [PollPolicy][].
    """

    result_path: ClassVar[str]
    id_param: ClassVar[str] = "taskId"

    def __init__(self, transport: Transport, default_policy: Callable[[], PollPolicy]) -> None:
        self._transport = transport
        self._default_policy = default_policy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport.base_url}/{self.result_path}>"

    async def result(self, task_id: str) -> Task:
        """Read the task's current state once, retrying transient failures.

        Args:
            task_id: the task to read.

        Returns:
            The task as it is now.

        Raises:
            ConfigurationError: ``task_id`` is empty or blank (nothing is sent).
            APIError: the API answered with an error status (a subclass per status);
                transient ones only once the client's retries have failed too.
            APIConnectionError: the network failed, after the retries.
            ResponseDecodeError: a successful answer whose body is not a task.
            UsageError: the client is closed.
        """
        status, body = await self._transport.request(
            "GET", self.result_path, params={self.id_param: check_task_id(task_id)}
        )
        return decode_task(body, status_code=status)

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
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            A [TaskWaiter][]: await it for the done [Task][], or iterate it for the
            [ProgressEvent][] of each change. Awaiting or iterating it raises
            ``TaskFailedError`` when the task fails, ``WaitTimeoutError`` when the
            deadline passes, and the ``APIError`` of a 400, 401, 402, 403 or 404.

        Raises:
            ConfigurationError: ``task_id`` is empty or blank.
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
        return decode_task(body, status_code=status)


class FaceSwap(TaskResource):
    """``/faceswap``: put the face from one image onto the person in another."""

    result_path = "faceswap/result"

    async def create(
        self, source_image: ImageInput, face_image: ImageInput, *, webhook: str | None = None
    ) -> Task:
        """Start a face swap: put the face from ``face_image`` on the person in
        ``source_image``.

        Files and bytes are sent inline as ``data:`` URIs (PNG, JPEG or WEBP, sniffed
        from the content, up to 10 MiB); URLs and ``data:`` URIs are sent as they are.
        The request is retried only where the server surely did not start a task.

        Args:
            source_image: the photo of the person: a URL, a ``data:`` URI, bytes or a
                file path.
            face_image: the photo of the face, in any of the same forms.
            webhook: a URL GPTunnel calls when the task is done.

        Returns:
            The new task, usually ``idle``; wait for it with ``wait_for_result(task.id)``.

        Raises:
            ConfigurationError: an image is empty, unreadable, too large, or not a PNG,
                JPEG or WEBP file.
            BadRequestError: the API refused the images.
            InsufficientBalanceError: the organisation's balance is too low.
            APIError: any other error status.
            APIConnectionError: the network failed.
        """
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
        """Start a face swap and wait for it to finish.

        Args:
            source_image: the photo of the person, in any form ``create`` takes.
            face_image: the photo of the face.
            policy: pacing and deadline of the wait.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            The done task; its ``result`` is the URL of the swapped image.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            ConfigurationError: an image is unusable.
            APIError: an error status that is not retried, or still failing after
                the retries (creating) or at the deadline (waiting).
        """
        task = await self.create(source_image, face_image)
        return await self.wait_for_result(
            task.id, policy=policy, timeout=timeout, on_progress=on_progress
        )
