"""GPTunnel's task families, each a few declarative lines on ``TaskResource``.

Reading and waiting are shared; a family declares where its tasks are read and how its
answers decode, and adds the create calls it has. Arguments are checked before any
request, so a typo never costs a paid task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from ._images import ImageInput, encode_image
from ._polling import POLICY_TIMEOUT, PollPolicy, ProgressCallback
from ._resources import Family, TaskResource, check_task_id, check_text
from ._sansio.responses import decode_media_task, decode_task
from .errors import ConfigurationError
from .models import MediaTask, Task

__all__ = ["BgRemover", "FaceSwap", "Media", "Midjourney"]

_VARIATION_MODES: Final = ("high", "low")


class FaceSwap(TaskResource[Task]):
    """``/faceswap``: put the face from one image onto the person in another."""

    family = Family("faceswap/result", decode_task)

    async def create(
        self, source_image: ImageInput, face_image: ImageInput, *, webhook: str | None = None
    ) -> Task:
        """Start a face swap: put the face from ``face_image`` on the person in
        ``source_image``.

        Files and bytes are sent inline as ``data:`` URIs (PNG, JPEG or WEBP, sniffed
        from the content, up to 10 MiB); URLs and ``data:`` URIs are sent as they are.
        The request is retried only where the server surely did not start a task.

        Args:
            source_image: the picture whose person gets the new face: a URL, a
                ``data:`` URI, bytes or a file path.
            face_image: the picture the face is taken from, in any of the same forms.
            webhook: a URL the API calls when the task ends.

        Returns:
            The new task, ``idle``; wait for it with ``wait_for_result(task.id)``.

        Raises:
            ConfigurationError: an image is empty, unreadable, too large, or not a PNG,
                JPEG or WEBP file; or the webhook is blank.
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
            payload["webhook"] = check_text("webhook", webhook)
        return await self._create("faceswap/create", payload)

    async def swap(
        self,
        source_image: ImageInput,
        face_image: ImageInput,
        *,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[Task] | None = None,
    ) -> Task:
        """Start a face swap and wait for it to finish.

        Args:
            source_image: the picture whose person gets the new face, in any form
                ``create`` takes.
            face_image: the picture the face is taken from.
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
        created = self.create(source_image, face_image)
        return await self._until_done(created, policy, timeout, on_progress)


class BgRemover(TaskResource[Task]):
    """``/bgremover``: background removal; its tasks are read and waited for here."""

    family = Family("bgremover/result", decode_task)


def _image_number(value: Any) -> int:
    """Which of a Midjourney grid's four images: an int from 1 to 4."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise ConfigurationError(f"image must be an int from 1 to 4, got {value!r}")
    return value


class Midjourney(TaskResource[Task]):
    """``/midjourney``: imagine a grid of four images, then upsample, vary or inpaint one.

    While a task runs (``percent`` < 100) its ``result`` is an intermediate image; when it
    is done, ``actions`` lists what can follow and ``parent_id`` names the task it came from.
    """

    family = Family("midjourney/result", decode_task)

    async def imagine(self, prompt: str, *, use_wallet_balance: bool = False) -> Task:
        """Start a Midjourney image grid from ``prompt``.

        Args:
            prompt: what to draw.
            use_wallet_balance: pay from the personal wallet rather than the organisation.

        Returns:
            The new task, ``idle``.

        Raises:
            ConfigurationError: the prompt is blank.
            APIError: the API refused the task, e.g. ``InsufficientBalanceError``.
            APIConnectionError: the network failed.
        """
        payload: dict[str, Any] = {"prompt": check_text("prompt", prompt)}
        if use_wallet_balance:
            payload["useWalletBalance"] = True
        return await self._create("midjourney/imagine", payload)

    async def upsample(self, task_id: str, image: int) -> Task:
        """Start upscaling one image of a done grid.

        Args:
            task_id: the grid's task.
            image: which of its four images, 1 to 4.

        Returns:
            The new task, ``idle``; its ``parent_id`` is ``task_id``.

        Raises:
            ConfigurationError: a blank ``task_id`` or an ``image`` outside 1-4.
            NotFoundError: no such task.
            APIError: any other error status.
        """
        payload = {"taskId": check_task_id(task_id), "image": _image_number(image)}
        return await self._create("midjourney/upsample", payload)

    async def variation(self, task_id: str, image: int, mode: str | None = None) -> Task:
        """Start variations of one image of a done grid.

        Args:
            task_id: the grid's task.
            image: which of its four images, 1 to 4.
            mode: ``"high"`` (strong) or ``"low"`` (subtle) variation; the API's
                default if ``None``.

        Returns:
            The new task, ``idle``; its ``parent_id`` is ``task_id``.

        Raises:
            ConfigurationError: a blank ``task_id``, an ``image`` outside 1-4, or
                another ``mode``.
            NotFoundError: no such task.
            APIError: any other error status.
        """
        payload: dict[str, Any] = {"taskId": check_task_id(task_id), "image": _image_number(image)}
        if mode is not None:
            if mode not in _VARIATION_MODES:
                raise ConfigurationError(f"mode must be 'high' or 'low', got {mode!r}")
            payload["mode"] = mode
        return await self._create("midjourney/variation", payload)

    async def inpaint(self, task_id: str, mask: ImageInput, prompt: str | None = None) -> Task:
        """Start redrawing the masked area of a task's image.

        Args:
            task_id: the task whose image is redrawn.
            mask: the area to redraw, as an image: a URL, a ``data:`` URI, bytes or a
                file path.
            prompt: what to draw there; none keeps the original prompt.

        Returns:
            The new task, ``idle``; its ``parent_id`` is ``task_id``.

        Raises:
            ConfigurationError: a blank ``task_id`` or ``prompt``, or an unusable mask.
            NotFoundError: no such task.
            APIError: any other error status.
        """
        payload: dict[str, Any] = {"taskId": check_task_id(task_id)}
        if prompt is not None:
            payload["prompt"] = check_text("prompt", prompt)
        payload["mask"] = await encode_image(mask)
        return await self._create("midjourney/inpaint", payload)

    async def imagine_and_wait(
        self,
        prompt: str,
        *,
        use_wallet_balance: bool = False,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[Task] | None = None,
    ) -> Task:
        """Start a Midjourney grid and wait for it to finish.

        Args:
            prompt: what to draw.
            use_wallet_balance: pay from the personal wallet rather than the organisation.
            policy: pacing and deadline of the wait.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            The done task, with its ``actions``.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            ConfigurationError: the prompt is blank.
            APIError: an error status that is not retried.
        """
        created = self.imagine(prompt, use_wallet_balance=use_wallet_balance)
        return await self._until_done(created, policy, timeout, on_progress)


async def _media_payload(
    model: str,
    prompt: str,
    images: Sequence[ImageInput] | None,
    ar: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The JSON of ``/media/create``, checked: ``None`` options are left out."""
    payload: dict[str, Any] = {
        "model": check_text("model", model),
        "prompt": check_text("prompt", prompt),
    }
    if images is not None:
        if isinstance(images, str | bytes | bytearray | memoryview) or not isinstance(
            images, Sequence
        ):
            raise ConfigurationError("images must be a list of images, even for one image")
        payload["images"] = [await encode_image(image) for image in images]
    if ar is not None:
        payload["ar"] = check_text("ar", ar)
    options = {key: value for key, value in extra.items() if value is not None}
    try:
        json.dumps(options)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"extra options must be JSON values: {exc}") from None
    return payload | options


class Media(TaskResource[MediaTask]):
    """``/media``: images, video and music from many models.

    Its tasks are [MediaTask][gptunnel_async.MediaTask]s. Errors come as HTTP 200 with
    a non-zero ``code``; they are raised as the same error classes as HTTP statuses,
    and code 6 (heavy load) is retried like a 503.
    """

    family = Family("media/result", decode_media_task, id_param="task_id")

    async def create(
        self,
        model: str,
        prompt: str,
        *,
        images: Sequence[ImageInput] | None = None,
        ar: str | None = None,
        **extra: Any,
    ) -> MediaTask:
        """Start a media generation.

        Args:
            model: the model's id, as GPTunnel lists it.
            prompt: what to generate.
            images: reference images (URLs, ``data:`` URIs, bytes or paths).
            ar: the aspect ratio, e.g. ``"16:9"``.
            extra: the model's other options, sent as given (``None`` ones left out).

        Returns:
            The new task, ``idle``.

        Raises:
            ConfigurationError: a blank model or prompt, ``images`` that is not a list,
                an unusable image, or options that are not JSON values.
            ContentPolicyError: moderation blocked the prompt or an image.
            APIError: the API refused the task (media codes raise the same classes).
            APIConnectionError: the network failed.
        """
        payload = await _media_payload(model, prompt, images, ar, extra)
        return await self._create("media/create", payload)

    async def generate(
        self,
        model: str,
        prompt: str,
        *,
        images: Sequence[ImageInput] | None = None,
        ar: str | None = None,
        policy: PollPolicy | None = None,
        timeout: float | None = POLICY_TIMEOUT,
        on_progress: ProgressCallback[MediaTask] | None = None,
        **extra: Any,
    ) -> MediaTask:
        """Start a media generation and wait for it to finish.

        Args:
            model: the model's id, as GPTunnel lists it.
            prompt: what to generate.
            images: reference images (URLs, ``data:`` URIs, bytes or paths).
            ar: the aspect ratio, e.g. ``"16:9"``.
            policy: pacing and deadline of the wait.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.
            extra: the model's other options, sent as given (``None`` ones left out).

        Returns:
            The done task, with ``url`` or its clips set.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            ConfigurationError: an argument is unusable.
            APIError: an error status that is not retried.
        """
        created = self.create(model, prompt, images=images, ar=ar, **extra)
        return await self._until_done(created, policy, timeout, on_progress)
