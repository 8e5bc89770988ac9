"""The emulator's control endpoints, under ``/_emulator/`` on the API's origin: what a
bot written in any language (or a shell script) needs to script the emulator over HTTP.

- ``GET /_emulator/requests``: the request logs, ``{"api": [...], "storage": [...]}``.
- ``POST /_emulator/tasks``: script a task (the body as in :func:`script_from_spec`);
  answers ``{"id": ...}``. ``GET /_emulator/tasks/{id}``: its state, without a read.
- ``POST /_emulator/faults``: queue a fault (:func:`fault_from_spec`);
  ``DELETE /_emulator/faults``: forget them all.

They need no key, and are not logged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .._bounded_body import bounded_body
from .._sansio.text import clip
from ..errors import ConfigurationError
from ..models import converter
from ._state import RecordedRequest

if TYPE_CHECKING:
    from ._fake import FakeGPTunnel

__all__ = [
    "CONTROL_BODY_TIME",
    "CONTROL_PREFIX",
    "MAX_CONTROL_BYTES",
    "MAX_SPEC_STEPS",
    "control_routes",
    "created_from_spec",
    "fault_from_spec",
    "script_from_spec",
]

CONTROL_PREFIX: Final = "/_emulator"

MAX_CONTROL_BYTES: Final = 2**20
"""1 MiB: the largest body a control endpoint reads (a spec is a few hundred bytes); a
bigger one is answered 413. The endpoints need no key, and what they are sent is kept."""

CONTROL_BODY_TIME: Final = 30.0
"""Seconds a control request's body may take to arrive in full (a spec is a few hundred
bytes): past it, 408 and the connection closed. aiohttp's server sets no deadline, and
the endpoints need no key: a body that stopped coming held its handler forever."""

DUMP_SECONDS: Final = 60.0
"""How long a reader of ``GET /_emulator/requests`` has to take the whole log; the
dumps are made one at a time, so a reader that stalls is cut off after this."""

MAX_SPEC_STEPS: Final = 1_000
"""The most ``steps`` a task spec or a created-tasks spec may list."""

_MEDIA_FIELDS: Final = frozenset({"clips", "preview_stub", "done_before_url", "failed_clips"})
"""A ``/media`` task's options, as ``script_task`` and ``script_created`` take them."""
_TASK_FIELDS: Final = (
    frozenset({"id", "steps", "duration", "error", "type", "model"}) | _MEDIA_FIELDS
)
_CREATED_FIELDS: Final = frozenset({"steps", "duration", "error", "done_at_create"}) | _MEDIA_FIELDS
_FAULT_FIELDS: Final = frozenset(
    {"kind", "status", "times", "retry_after", "seconds", "path", "server", "body"}
)


def _fields(spec: Any, allowed: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"{what} must be a JSON object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigurationError(f"{what} has unknown fields {unknown}; known: {sorted(allowed)}")
    return spec


def script_from_spec(fake: FakeGPTunnel, spec: Any) -> str:
    """Script one task from a JSON-like spec; return its id.

    ``{"steps": [["queued", 0], ["running", 40], ["done", 100]]}`` (one step per read)
    or ``{"duration": 30}`` (seconds from its first read), with optional ``"id"``,
    ``"error"`` (the task then fails), ``"type"`` (``"@FaceSwap"``, ``"@BGRemover"``, or
    a Midjourney one: ``"imagine"``, ``"upsample"`` ...) or ``"model"`` (a ``/media`` task),
    and for a media task ``"clips"``, ``"failed_clips"``, ``"done_before_url"`` (ints) and
    ``"preview_stub"`` (a boolean), as :meth:`FakeGPTunnel.script_task` takes them.

    Raises:
        ConfigurationError: the spec is not one.
    """
    fields = _fields(spec, _TASK_FIELDS, "a task")
    _one_script(fields)
    return fake.script_task(
        steps=_steps(fields),
        duration=fields.get("duration"),
        error=fields.get("error"),
        task_id=fields.get("id"),
        type=fields.get("type", "@FaceSwap"),
        model=fields.get("model"),
        **_media_options(fields),
    )


def created_from_spec(fake: FakeGPTunnel, spec: Any) -> None:
    """Script every task created through the API from now on: ``{"steps": [...]}`` or
    ``{"duration": 5}``, with an optional ``"error"``, ``"done_at_create"`` and the media
    options of :func:`script_from_spec`.

    Raises:
        ConfigurationError: the spec is not one.
    """
    fields = _fields(spec, _CREATED_FIELDS, "the created tasks' script")
    _one_script(fields)
    fake.script_created(
        steps=_steps(fields),
        duration=fields.get("duration"),
        error=fields.get("error"),
        done_at_create=fields.get("done_at_create", False),
        **_media_options(fields),
    )


def _media_options(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The media options a spec gives, by ``script_task``'s names; JSON's ``null`` is
    an option left out (its default), as ``"model": null`` is."""
    return {name: fields[name] for name in _MEDIA_FIELDS if fields.get(name) is not None}


def _one_script(fields: Mapping[str, Any]) -> None:
    """Refuse a spec with both ``steps`` and ``duration``, or neither, in the words of
    the JSON it came in (``script_task``'s own words are Python's)."""
    if (fields.get("steps") is None) == (fields.get("duration") is None):
        raise ConfigurationError(
            'give exactly one of "steps": [[status, percent], ...] or "duration": seconds'
        )


def _steps(fields: Mapping[str, Any]) -> list[Any] | None:
    """The spec's ``steps``, each JSON pair as a tuple."""
    steps = fields.get("steps")
    if steps is None:
        return None
    if not isinstance(steps, list):
        raise ConfigurationError("steps must be a list of [status, percent] pairs")
    if len(steps) > MAX_SPEC_STEPS:
        raise ConfigurationError(
            f"steps has {len(steps)} pairs, over the {MAX_SPEC_STEPS} a spec may have "
            '(a long task is {"duration": seconds})'
        )
    return [tuple(step) if isinstance(step, list) else step for step in steps]


def fault_from_spec(fake: FakeGPTunnel, spec: Any) -> None:
    """Queue one fault from a JSON-like spec.

    ``{"kind": "fail", "status": 503, "times": 2, "retry_after": 1}``,
    ``{"kind": "drop"}`` or ``{"kind": "delay", "seconds": 5}``; each may limit itself
    to one endpoint (``"path": "faceswap/create"``) or aim at ``"server": "storage"``.

    Raises:
        ConfigurationError: the spec is not one.
    """
    fields = dict(_fields(spec, _FAULT_FIELDS, "a fault"))
    kind = fields.pop("kind", "fail")
    where = {"times": fields.pop("times", 1), "path": fields.pop("path", None)}
    where["server"] = fields.pop("server", "api")
    if kind == "fail":
        fake.fail_next(fields.pop("status", 503), **where, **fields)
    elif kind == "drop" and not fields:
        fake.drop_next(**where)
    elif kind == "delay" and set(fields) <= {"seconds"}:
        fake.delay_next(fields.get("seconds", 1.0), **where)
    else:
        raise ConfigurationError(
            f"a fault's kind is 'fail', 'drop' or 'delay' with its fields, got {spec}"
        )


async def _write_logs(
    response: web.StreamResponse, logs: Mapping[str, list[RecordedRequest]], api_key: str
) -> None:
    """``{"api": [...], "storage": [...]}``, each request as :func:`_request_json`
    (credentials other than ``api_key`` masked), written as it is made. A header, path
    or query byte that is not UTF-8 (aiohttp keeps it as a lone surrogate) is written as
    its JSON escape (``\\udcff``), as the whole dump was before: UTF-8 cannot encode it."""
    opening = "{"
    for name, log in logs.items():
        await response.write(f"{opening}{json.dumps(name)}: [".encode())
        for index, record in enumerate(log):
            text = json.dumps(_request_json(record, api_key), ensure_ascii=False)
            chunk = f"{', ' if index else ''}{text}"
            await response.write(chunk.encode("utf-8", "backslashreplace"))
        await response.write(b"]")
        opening = ", "
    await response.write(b"}")
    await response.write_eof()


CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
"""The headers (lower case) whose value the request log's dump masks unless it holds
the emulator's own key."""

OTHER_CREDENTIAL: Final = "*** (not this emulator's key)"
"""What the dump shows for a credential that does not hold the emulator's key."""


def _request_json(request: RecordedRequest, api_key: str) -> dict[str, Any]:
    """``request`` as the dump shows it. A credential header that does not hold
    ``api_key`` (the emulator's own, printed when it starts) shows as
    :data:`OTHER_CREDENTIAL`: the endpoint needs no key, and a bot pointed at the
    emulator with its real GPTunnel key in the environment sends that key here."""
    headers = {  # each name once, with its first value, as dict(headers) has it
        name: _shown(name, request.headers[name], api_key) for name in request.headers
    }
    return {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "headers": headers,
        "body": request.body.decode("utf-8", "replace"),
    }


def _shown(name: str, value: str, api_key: str) -> str:
    if name.lower() in CREDENTIAL_HEADERS and not (api_key and api_key in value):
        return OTHER_CREDENTIAL
    return value


Handler = Callable[[web.Request], Any]


def control_routes(fake: FakeGPTunnel) -> list[web.RouteDef]:
    """The control endpoints of ``fake``."""

    dumping = asyncio.Lock()

    async def requests(request: web.Request) -> web.StreamResponse:
        # Written a request at a time, one dump at a time: a body of binary bytes takes
        # a few times its size as JSON, and the endpoint needs no key.
        logs = {"api": fake.requests, "storage": fake.storage_requests}
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        async with dumping:
            try:
                async with asyncio.timeout(DUMP_SECONDS):
                    await response.prepare(request)
                    await _write_logs(response, logs, fake.api_key)
            except TimeoutError:  # a reader that stalls does not hold the others off
                if request.transport is not None:
                    request.transport.abort()
        return response

    def task(request: web.Request) -> web.Response:
        try:
            state = fake.task(request.match_info["id"])
        except KeyError:
            return web.json_response({"error": "no such task"}, status=404)
        return web.json_response(converter.unstructure(state))

    async def add_task(request: web.Request) -> web.Response:
        return await _changing(request, lambda spec: {"id": script_from_spec(fake, spec)})

    def fault(spec: Any) -> Mapping[str, Any]:
        fault_from_spec(fake, spec)
        return {}

    async def add_fault(request: web.Request) -> web.Response:
        return await _changing(request, fault)

    async def clear_faults(_: web.Request) -> web.Response:
        fake.clear_faults()
        return web.json_response({})

    routes = [
        web.get(f"{CONTROL_PREFIX}/requests", requests),
        web.get(f"{CONTROL_PREFIX}/tasks/{{id}}", _async(task)),
        web.post(f"{CONTROL_PREFIX}/tasks", add_task),
        web.post(f"{CONTROL_PREFIX}/faults", add_fault),
        web.delete(f"{CONTROL_PREFIX}/faults", clear_faults),
    ]
    known = ", ".join(f"{route.method} {route.path}" for route in routes)

    def lacking(request: web.Request) -> web.Response:
        # Past the known routes, a control path (mistyped, or another method) is
        # answered here: the API's catch-all would take a fault queued for the code
        # under test and log it as an API request.
        shown = clip(f"{request.method} {request.path}", 200)
        error = f"no such control endpoint: {shown}; the control endpoints are {known}"
        return web.json_response({"error": error}, status=404)

    return [
        *routes,
        web.route("*", CONTROL_PREFIX, _async(lacking)),
        web.route("*", f"{CONTROL_PREFIX}/{{tail:.*}}", _async(lacking)),
    ]


async def _control_body(request: web.Request) -> bytes | web.Response:
    """A control request's body, or the answer that refuses it, closing the connection
    (the body is not read in full): 400 cut short or not decodable, 408 not in full
    within :data:`CONTROL_BODY_TIME`, 413 over :data:`MAX_CONTROL_BYTES`."""
    try:
        body = await bounded_body(request, MAX_CONTROL_BYTES, CONTROL_BODY_TIME)
    except (web.RequestPayloadError, ConnectionError):
        request.content.feed_eof()  # else aiohttp reads on, and logs the same error
        return _closing("the body was cut short or does not decode", 400)
    except TimeoutError:
        request.content.feed_eof()
        return _closing(f"the body did not arrive within {CONTROL_BODY_TIME:g}s", 408)
    if body is None:
        return _closing(f"a control request's body is at most {MAX_CONTROL_BYTES} bytes", 413)
    return body


def _closing(error: str, status: int) -> web.Response:
    response = web.json_response({"error": error}, status=status)
    response.force_close()
    return response


def _async(handler: Callable[[web.Request], web.Response]) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        return handler(request)

    return handle


async def _changing(
    request: web.Request, change: Callable[[Any], Mapping[str, Any]]
) -> web.Response:
    """Apply ``change`` to the request's JSON body; a bad body or spec answers 400."""
    body = await _control_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        spec = json.loads(body)
        return web.json_response(dict(change(spec)))
    except ValueError as exc:  # JSONDecodeError and bad specs alike
        return web.json_response({"error": str(exc)}, status=400)
    except RecursionError:
        return web.json_response({"error": "the JSON is nested too deeply"}, status=400)
