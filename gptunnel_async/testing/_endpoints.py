"""The API as the emulator speaks it: error bodies, and the table of endpoints.

Each endpoint turns a :class:`RecordedRequest` into an answer, with no network in
sight; a new task family is a few lines in :data:`ENDPOINTS`, e.g.::

    CreateTask("bgremover/create", type="@BgRemover", images=("image",)),
    ReadTask("bgremover/result"),
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final, Protocol

import attrs
from aiohttp import web

from ..models import converter
from ._state import EmulatorState, RecordedRequest

__all__ = [
    "ENDPOINTS",
    "CreateTask",
    "Endpoint",
    "ReadTask",
    "error_body",
    "error_response",
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

_DATA_URI: Final = re.compile(r"data:image/[\w.+-]+;base64,(?P<data>[A-Za-z0-9+/=\s]+)")


def error_body(status: int, message: str | None = None, *, param: str | None = None) -> Any:
    """The API's error object for ``status``: ``{"error": {message, type, param, code}}``."""
    if message is None:
        message = ERROR_MESSAGES.get(status) or HTTPStatus(status).phrase
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


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


def task_response(task: Any) -> web.Response:
    """A task object, shaped by the SDK's own converter (``parent_id`` -> ``parentId``)."""
    body = converter.unstructure(task)
    if not body.get("actions"):
        del body["actions"]
    return web.json_response(body)


class Endpoint(Protocol):
    """One route of the API: its method, its path under the base URL, and its answer."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        """The answer to an authorised ``request``."""
        ...


@attrs.frozen
class ReadTask:
    """``GET <path>?taskId=ID``: a task's state; each read moves its script on."""

    path: str
    id_param: str = "taskId"
    method: str = "GET"

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        task_id = request.query.get(self.id_param)
        if not task_id:
            return error_response(
                400, f"'{self.id_param}' is a required property", param=self.id_param
            )
        task = state.read_task(task_id)
        if task is None:
            return error_response(404, "Task not found", param=self.id_param)
        return task_response(task)


@attrs.frozen
class CreateTask:
    """``POST <path>`` with a JSON object: starts a task of ``type``, answered ``idle``.

    ``images`` are required fields holding an http(s) URL or a base64 ``data:image/...``
    URI; ``required`` are other required fields; ``webhook`` is optional everywhere.
    """

    path: str
    type: str
    images: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    method: str = "POST"

    def answer(self, state: EmulatorState, request: RecordedRequest) -> web.Response:
        payload = request.json
        if not isinstance(payload, dict):
            return error_response(400, "The request body must be a JSON object")
        for field in (*self.images, *self.required):
            if payload.get(field) in (None, ""):
                return error_response(400, f"'{field}' is a required property", param=field)
        for field in self.images:
            if not _is_image(payload[field]):
                return error_response(
                    400, f"'{field}' must be an image URL or a base64 data URI", param=field
                )
        webhook = payload.get("webhook")
        if webhook is not None and not _is_http_url(webhook):
            return error_response(400, "'webhook' must be an http(s) URL", param="webhook")
        return task_response(state.add_task(type=self.type).created())


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


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
    ReadTask("faceswap/result"),
)
"""Every route the emulator answers, relative to the base URL (``.../v1``)."""
