"""GPTunnel's task families, each a few declarative lines on :class:`TaskResource`.

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
from ._protocol import decode_media_task, decode_task
from ._resources import Family, TaskResource, check_task_id, check_text
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
        """Start a face swap; images may be URLs, ``data:`` URIs, bytes or file paths.

        Args:
            source_image: the picture whose person gets the new face.
            face_image: the picture the face is taken from.
            webhook: a URL the API calls when the task ends.

        Returns:
            The new task, ``idle``.
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
        """Start a face swap and wait for it: the finished task, ``result`` holding the URL."""
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
        """
        payload: dict[str, Any] = {"prompt": check_text("prompt", prompt)}
        if use_wallet_balance:
            payload["useWalletBalance"] = True
        return await self._create("midjourney/imagine", payload)

    async def upsample(self, task_id: str, image: int) -> Task:
        """Start upscaling image ``image`` (1-4) of a done grid task ``task_id``."""
        payload = {"taskId": check_task_id(task_id), "image": _image_number(image)}
        return await self._create("midjourney/upsample", payload)

    async def variation(self, task_id: str, image: int, mode: str | None = None) -> Task:
        """Start variations of image ``image`` (1-4) of ``task_id``; ``mode`` is
        ``"high"`` (strong) or ``"low"`` (subtle) variation."""
        payload: dict[str, Any] = {"taskId": check_task_id(task_id), "image": _image_number(image)}
        if mode is not None:
            if mode not in _VARIATION_MODES:
                raise ConfigurationError(f"mode must be 'high' or 'low', got {mode!r}")
            payload["mode"] = mode
        return await self._create("midjourney/variation", payload)

    async def inpaint(self, task_id: str, mask: ImageInput, prompt: str | None = None) -> Task:
        """Start redrawing the ``mask``-ed area of ``task_id``'s image, guided by ``prompt``.

        ``mask`` is an image like those of create calls: a URL, ``data:`` URI, bytes or path.
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
        """Start a Midjourney grid and wait for it: the done task, with its ``actions``."""
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
    """``/media``: images, video and music from many models, as :class:`MediaTask`.

    Errors come as HTTP 200 with a non-zero ``code``; they are raised as the same error
    classes as HTTP statuses, and code 6 (heavy load) is retried like a 503.
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
        """Start a media generation and wait for it: the done task, ``url`` or clips set."""
        created = self.create(model, prompt, images=images, ar=ar, **extra)
        return await self._until_done(created, policy, timeout, on_progress)
