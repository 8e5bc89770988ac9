"""The API as the emulator speaks it: error bodies, and the table of endpoints.

Each endpoint turns a :class:`RecordedRequest` into an answer, with no network in
sight; a task family is a few lines in :data:`ENDPOINTS`, e.g.::

    CreateTask("faceswap/create", type="@FaceSwap", images=("sourceImage", "faceImage")),
    ReadTask("faceswap/result", owns=of_type("@FaceSwap")),
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final, Protocol

import attrs
from aiohttp import web
from yarl import URL

from .._images import MASK_TONES
from .._png import read_png
from ..models import MediaTask, Task, converter
from ._scripts import LOOKS
from ._state import EmulatorState, RecordedRequest

__all__ = [
    "ENDPOINTS",
    "CreateMedia",
    "CreateTask",
    "Endpoint",
    "ErrorAnswer",
    "ParentCheck",
    "ReadTask",
    "ShowBalance",
    "error_body",
    "error_response",
    "is_media_path",
    "is_webhook_url",
    "media_error_response",
    "task_body",
    "task_response",
]

ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "unauthorized_request_error",
    402: "insufficient_balance_error",
    403: "permission_denied_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
}

ERROR_MESSAGES: Final[Mapping[int, str]] = {
    401: "Unauthorized",
    402: "Organization balance is too low to use API",
}

MEDIA_CODES: Final[Mapping[int, int]] = {
    400: 3,
    401: 2,
    402: 5,
    403: 7,
    404: 4,
    405: 99,
    503: 6,
}
"""The ``code`` ``/media`` answers (with HTTP 200) where other endpoints use a status
(docs.gptunnel.ru/media-api/models: "Always HTTP 200; body code: 1 internal, 2 invalid
token, 3 invalid input, 4 record not found, 5 insufficient balance, 6 heavy load, 7 org
restricted for model, 99 method not found"): a missing or wrong key (401) is 2, a
wrong HTTP method or a path ``/media`` lacks (405) is 99; anything else is 1, an
internal error."""

MEDIA_PREFIX: Final = "media/"
"""The paths of the ``/media`` API, relative to the base URL."""

MEDIA_MESSAGES: Final[Mapping[int, str]] = {
    1: "Internal error",
    2: "Invalid token",
    3: "Invalid input",
    4: "Not found",
    5: "Insufficient balance",
    6: "Heavy load, try again later",
    7: "Model is not allowed for the organisation",
    99: "Method not found",
}

_MIDJOURNEY_IMAGES: Final = (1, 2, 3, 4)

MEDIA_ASPECT_RATIOS: Final = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
"""``ar`` values the docs list (docs.gptunnel.ru/creative-lab/image-1: the last two for
"some models" only). Which models is not documented, so every model takes them here,
one of the departures docs/testing.md lists."""

SUNO_VERSIONS: Final = ("chirp-v3-5", "chirp-v4", "chirp-v4-5")
"""suno's documented ``version`` values."""

_DATA_URI: Final = re.compile(r"data:image/[\w.+-]+;base64,(?P<data>[A-Za-z0-9+/=\s]+)")


def is_media_path(path: str) -> bool:
    """Whether ``path`` (relative to the base URL, ``media/create``) is the ``/media``
    API's, which answers every error with HTTP 200 and a ``code``."""
    return path.startswith(MEDIA_PREFIX)


def error_body(status: int, message: str | None = None, *, param: str | None = None) -> Any:
    """The API's error object for ``status``: ``{"error": {message, type, param, code}}``."""
    if message is None:
        message = ERROR_MESSAGES.get(status) or _phrase(status)
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _phrase(status: int) -> str:
    """The status's reason phrase, or ``HTTP 520`` for one outside the standard's list
    (a CDN's 520, 522, 524)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def error_response(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error answer with the API's error object."""
    return web.json_response(
        error_body(status, message, param=param), status=status, headers=headers
    )


def media_error_response(
    status: int, message: str | None = None, *, param: str | None = None
) -> web.Response:
    """An error the way ``/media`` sends one: HTTP 200 with the :data:`MEDIA_CODES` code;
    a validation error (code 3) lists its ``issues``, the field at fault first."""
    code = MEDIA_CODES.get(status, 1)
    body: dict[str, Any] = {"code": code, "message": MEDIA_MESSAGES[code]}
    if code == 3:
        issue = {
            "path": param.split(".") if param else [],
            "expected": _expected(message),
            "message": message,
        }
        body["issues"] = [issue]
    elif message:
        body["message"] = message
    return web.json_response(body)


ParentCheck = Callable[[Mapping[str, Any], Task, EmulatorState], "tuple[str, str] | None"]
"""What a follow-up endpoint asks of its parent task: ``(message, param)`` if refused."""


def _offered(parent: Task, action: str, param: str) -> tuple[str, str] | None:
    if action in parent.actions:
        return None
    if not parent.is_done:  # the usual slip: a follow-up before its parent finished
        return (
            f"the task does not offer the action '{action}': it is {parent.status!r}, "
            "and a task offers its actions once it is done"
        ), param
    return f"the task does not offer the action '{action}'", param


def _upsample_check(
    payload: Mapping[str, Any], parent: Task, state: EmulatorState
) -> tuple[str, str] | None:
    """``/midjourney/upsample``: the grid must offer ``upsamle_<image>`` (sic)."""
    return _offered(parent, f"upsamle_{payload['image']}", "image")


def _variation_check(
    payload: Mapping[str, Any], parent: Task, state: EmulatorState
) -> tuple[str, str] | None:
    """``/midjourney/variation``: ``mode`` is required for an upsample parent (its
    ``high_variation``/``low_variation``), ``image`` for a grid (its ``variation_N``)."""
    if parent.type in ("upsample", "upscale"):
        mode = payload.get("mode")
        if mode is None:
            return "'mode' is a required property", "mode"
        return _offered(parent, f"{mode}_variation", "mode")
    image = payload.get("image")
    if image is None:
        return "'image' is a required property", "image"
    return _offered(parent, f"variation_{image}", "image")


INPAINT_MASK_MESSAGE: Final = (
    "'mask' should be base64 png black and white image with same size as previous generation"
)
"""The docs' answer to a mask it cannot use."""


def _inpaint_check(
    payload: Mapping[str, Any], parent: Task, state: EmulatorState
) -> tuple[str, str] | None:
    """``/midjourney/inpaint``: the mask is base64 of a black-and-white PNG the size of
    the parent's image (the emulator's result image)."""
    mask = payload.get("mask")
    parent_image = read_png(state.result_image)
    size = (parent_image.width, parent_image.height)
    try:
        decoded = base64.b64decode(mask, validate=True) if isinstance(mask, str) else None
        image = None if decoded is None else read_png(decoded, size)
    except (binascii.Error, ValueError):
        image = None
    if (
        image is None
        or (image.width, image.height) != size
        or (image.colours is not None and not image.colours <= MASK_TONES)
    ):
        return INPAINT_MASK_MESSAGE, "mask"
    return None


def _expected(message: str | None) -> str:
    """What a refused field should have been, for a validation issue's ``expected``."""
    text = message or ""
    if "Expected " in text:
        return text.partition("Expected ")[2]
    return "an http(s) URL" if "url" in text else "string"


class ErrorAnswer(Protocol):
    """How a family answers an error: :func:`error_response` or :func:`media_error_response`."""

    def __call__(
        self, status: int, message: str | None = None, *, param: str | None = None
    ) -> web.Response: ...


def task_body(task: Task | MediaTask) -> dict[str, Any]:
    """A task as its family sends it: a task object (shaped by the SDK's own converter,
    ``parent_id`` -> ``parentId``; ``actions`` only where the family has them), or a
    ``/media`` answer with ``code`` 0."""
    if isinstance(task, MediaTask):
        return _media_body(task)
    body: dict[str, Any] = converter.unstructure(task)
    if task.type not in LOOKS:
        del body["actions"]
    return body


def _media_body(task: MediaTask) -> dict[str, Any]:
    """A ``/media`` answer: ``result`` is null, the file's link, or suno's list of clips."""
    result: Any = task.url
    if task.clips:
        result = [
            {key: value for key, value in converter.unstructure(clip).items() if value is not None}
            for clip in task.clips
        ]
    fields = ("id", "model", "created_at", "status")
    body = {"code": 0} | {name: getattr(task, name) for name in fields} | {"result": result}
    extras = {"cost": task.cost, "message": task.message}
    return body | {key: value for key, value in extras.items() if value is not None}


def task_response(task: Task | MediaTask) -> web.Response:
    """A task as its family answers it (see :func:`task_body`)."""
    return web.json_response(task_body(task))


class Endpoint(Protocol):
    """One route of the API: its method, its path under the base URL, and its answer."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        """The answer to an authorised ``request``."""
        ...


TaskFilter = Callable[[Task | MediaTask], bool]
"""Which tasks an endpoint answers for: those of its own family."""


def of_type(*types: str) -> TaskFilter:
    """Tasks (not media tasks) whose ``type`` is one of ``types``."""
    return lambda task: isinstance(task, Task) and task.type in types


_NOT_MIDJOURNEY: Final = frozenset({"@FaceSwap", "@BGRemover", "@Media"})


def is_midjourney(task: Task | MediaTask) -> bool:
    """A Midjourney task: a task of any type but the other families' (``imagine``,
    ``upsample``, ``variation``, ``inpaint`` ...)."""
    return isinstance(task, Task) and task.type not in _NOT_MIDJOURNEY


def is_media(task: Task | MediaTask) -> bool:
    """A ``/media`` task."""
    return isinstance(task, MediaTask)


@attrs.frozen
class ReadTask:
    """``GET <path>?taskId=ID`` (or a ``POST`` with the id in its JSON): a task's state;
    each read moves its script on. ``errors`` is how the family answers errors.

    ``owns`` picks the tasks of the endpoint's family: an id of another family's task is
    answered as an unknown id (404, or media's "record not found"), as each family's
    tasks live in its own store; so a read on the wrong family's endpoint fails in tests
    instead of answering a task that never finishes there.
    """

    path: str
    owns: TaskFilter
    id_param: str = "taskId"
    method: str = "GET"
    errors: ErrorAnswer = error_response

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        payload = request.json if request.method == "POST" else None
        task_id = payload.get(self.id_param) if isinstance(payload, dict) else None
        task_id = task_id or request.query.get(self.id_param)
        if not task_id:
            return self.errors(
                400, f"'{self.id_param}' is a required property", param=self.id_param
            )
        task = state.peek_task(str(task_id))
        if task is None or not self.owns(task):
            return self.errors(404, "Task not found", param=self.id_param)
        return task_response(state.read_task(str(task_id)) or task)


@attrs.frozen
class CreateTask:
    """``POST <path>`` with a JSON object: starts a task of ``type``, answered ``idle``.

    ``images`` are required fields holding an http(s) URL or a base64 ``data:image/...``
    URI; ``required`` are other required fields; ``choices`` limit fields to some values
    (of the same JSON type: ``true`` is not ``1``); ``parent`` names the field holding
    the task this one continues, which must exist and be one of ``parent_owns`` (the
    family's own tasks, as a read finds them: another family's task is not found);
    ``check`` is what the endpoint asks of that parent (the action it must offer, a
    mask's size); ``webhook`` is optional everywhere. With no balance left the answer
    is 402.
    """

    path: str
    type: str
    images: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    choices: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    parent: str | None = None
    check: ParentCheck | None = None
    parent_owns: TaskFilter = lambda task: True
    method: str = "POST"

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        payload = request.json
        if not isinstance(payload, dict):
            return error_response(400, "The request body must be a JSON object")
        parent = (self.parent,) if self.parent else ()
        problem = _payload_problem(payload, (*parent, *self.required), self.images, self.choices)
        if problem is not None:
            return error_response(400, problem[0], param=problem[1])
        parent_id = str(payload[self.parent]) if self.parent else None
        refusal = self._parent_refusal(state, payload, parent_id)
        if refusal is not None:
            return refusal
        if not state.can_pay():
            return error_response(402)
        if not state.has_room():
            return error_response(503)
        webhook = payload.get("webhook")
        task = state.add_task(type=self.type, parent_id=parent_id, webhook=webhook)
        return task_response(task.created())

    def _parent_refusal(
        self, state: EmulatorState, payload: Mapping[str, Any], parent_id: str | None
    ) -> web.Response | None:
        """404 for a parent that does not exist (or is another family's task), 400 for
        one ``check`` refuses."""
        if parent_id is None:
            return None
        parent = state.peek_task(parent_id)
        if parent is None or not self.parent_owns(parent):
            return error_response(404, "Task not found", param=self.parent)
        problem = (
            self.check(payload, parent, state) if self.check and isinstance(parent, Task) else None
        )
        return None if problem is None else error_response(400, problem[0], param=problem[1])


@attrs.frozen
class CreateMedia:
    """``POST <path>`` ``{"model", "prompt", "images"?, ...}``: starts a ``/media`` task,
    answered as documented (``code`` 0, ``status`` idle, ``input``); errors come as
    ``/media`` sends them, with HTTP 200 and a ``code``."""

    path: str
    method: str = "POST"

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        payload = request.json
        if not isinstance(payload, dict):
            return media_error_response(400, "Expected object, received non-object")
        problem = _media_problem(payload)
        if problem is not None:
            return media_error_response(400, problem[0], param=problem[1])
        if not state.can_pay():
            return media_error_response(402)
        if not state.has_room():
            return media_error_response(503)
        task = state.add_task(
            type="@Media", model=str(payload["model"]), webhook=payload.get("webhook")
        )
        return web.json_response(task_body(task.created()) | {"input": payload})


def _media_problem(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """What ``/media/create`` refuses, as ``(message, path)``: a missing model or prompt,
    ``images`` that are not a list of http(s) links (the docs: "array of image links"),
    an aspect ratio or suno version outside the documented ones."""
    for field in ("model", "prompt"):
        if not isinstance(payload.get(field), str) or not payload[field]:
            return "Required", field
    for field, allowed in (("ar", MEDIA_ASPECT_RATIOS), ("version", SUNO_VERSIONS)):
        if field in payload and payload[field] not in allowed:
            return f"Invalid enum value. Expected {' | '.join(map(repr, allowed))}", field
    webhook = payload.get("webhook")
    if webhook is not None and not is_webhook_url(webhook):
        return "Invalid url", "webhook"
    return _images_problem(payload.get("images", []))


def _images_problem(images: Any) -> tuple[str, str] | None:
    if not isinstance(images, list):
        return "Expected array, received " + type(images).__name__, "images"
    for index, image in enumerate(images):
        if not _is_http_url(image):
            return "Invalid url: images are links, not uploads or base64", f"images.{index}"
    return None


@attrs.frozen
class ShowBalance:
    """``GET <path>``: the organisation's balance object."""

    path: str
    method: str = "GET"

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        balance = state.balance
        return web.json_response(
            {
                "orgId": balance.org_id,
                "object": "balance",
                "balance": balance.balance,
                "creditLimit": balance.credit_limit,
            }
        )


def _payload_problem(
    payload: Mapping[str, Any],
    required: Sequence[str],
    images: Sequence[str] = (),
    choices: Sequence[tuple[str, tuple[Any, ...]]] = (),
) -> tuple[str, str] | None:
    """What is wrong with a create's JSON, as ``(message, param)``, or ``None``."""
    for field in (*images, *required):
        if payload.get(field) in (None, ""):
            return f"'{field}' is a required property", field
    for field in images:
        if not _is_image(payload[field]):
            return f"'{field}' must be an image URL or a base64 data URI", field
    for field, allowed in choices:
        if field in payload and not _one_of(payload[field], allowed):
            return f"'{field}' must be one of {', '.join(map(str, allowed))}", field
    webhook = payload.get("webhook")
    if webhook is not None and not is_webhook_url(webhook):
        return "'webhook' must be an http(s) URL", "webhook"
    return None


def _one_of(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value`` is one of ``allowed`` as JSON tells values apart: ``true`` and ``1.0``
    are not the image ``1``, as Python's ``==`` would have them."""
    return any(type(value) is type(choice) and value == choice for choice in allowed)


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def is_webhook_url(value: Any) -> bool:
    """Whether ``value`` is an http(s) URL the emulator can POST to: one that parses and
    names a host. ``http://[::1/x`` or ``http:///x`` was taken, and its delivery then
    failed unseen (a task exception nobody retrieved, logged with the URL's token)."""
    if not _is_http_url(value):
        return False
    try:
        return bool(URL(value).raw_host)
    except ValueError:
        return False


def _is_image(value: Any) -> bool:
    if _is_http_url(value):
        return True
    match = _DATA_URI.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return False
    try:
        return bool(base64.b64decode(match["data"], validate=False))
    except (binascii.Error, ValueError):
        return False


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    CreateTask("faceswap/create", type="@FaceSwap", images=("sourceImage", "faceImage")),
    ReadTask("faceswap/result", of_type("@FaceSwap")),
    CreateTask("bgremover/create", type="@BGRemover"),
    ReadTask("bgremover/result", of_type("@BGRemover")),
    CreateTask("midjourney/imagine", type="imagine", required=("prompt",)),
    CreateTask(
        "midjourney/upsample",
        type="upsample",
        parent="taskId",
        required=("image",),
        choices=(("image", _MIDJOURNEY_IMAGES),),
        check=_upsample_check,
        parent_owns=is_midjourney,
    ),
    CreateTask(
        "midjourney/variation",
        type="variation",
        parent="taskId",
        choices=(("image", _MIDJOURNEY_IMAGES), ("mode", ("high", "low"))),
        check=_variation_check,
        parent_owns=is_midjourney,
    ),
    CreateTask(
        "midjourney/inpaint",
        type="inpaint",
        parent="taskId",
        required=("mask",),
        check=_inpaint_check,
        parent_owns=is_midjourney,
    ),
    *(
        CreateTask(f"midjourney/{name}", type=name, parent="taskId", parent_owns=is_midjourney)
        for name in ("outpaint", "pan", "upscale", "reroll")
    ),
    ReadTask("midjourney/result", is_midjourney),
    CreateMedia("media/create"),
    ReadTask("media/result", is_media, id_param="task_id", errors=media_error_response),
    ReadTask(
        "media/result", is_media, id_param="task_id", method="POST", errors=media_error_response
    ),
    ShowBalance("balance"),
)
"""Every route the emulator answers, relative to the base URL (``.../v1``).

``bgremover/create`` and Midjourney's ``outpaint``, ``pan``, ``upscale`` and ``reroll``
are in the docs' menu without a described body: the emulator takes any JSON object
there (with the parent's ``taskId`` for Midjourney's), and starts a task."""
