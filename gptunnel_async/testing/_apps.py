"""The emulator's two aiohttp applications: the API under ``/v1``, and the storage origin.

Every request is logged first, then meets the queued faults, then (on the API) the
bare-key ``Authorization`` check, and only then its endpoint.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._endpoints import ENDPOINTS, Endpoint, error_body, error_response
from ._state import EmulatorState, Fault, RecordedRequest, Server

__all__ = ["API_PREFIX", "api_app", "storage_app"]

API_PREFIX: Final = "/v1"
"""The path of the base URL, as on the real service."""

Answer = Callable[[RecordedRequest, str], web.Response]


def api_app(state: EmulatorState, control: Sequence[web.RouteDef] = ()) -> web.Application:
    """The API: :data:`ENDPOINTS` under ``/v1``, behind the bare-key check; ``control``
    routes (the emulator's own, unlogged) before them."""
    routes: dict[str, dict[str, Endpoint]] = {}
    for endpoint in ENDPOINTS:
        routes.setdefault(endpoint.path, {})[endpoint.method] = endpoint

    def answer(request: RecordedRequest, path: str) -> web.Response:
        if request.headers.get("Authorization") != state.api_key:
            return error_response(401)
        methods = routes.get(path) if request.path.startswith(f"{API_PREFIX}/") else None
        if methods is None:  # a path the API lacks: a web server's 404, not the API's JSON
            return web.Response(status=404, text=f"Cannot {request.method} {request.path}")
        endpoint = methods.get(request.method)
        if endpoint is None:
            return error_response(405, headers={"Allow": ", ".join(sorted(methods))})
        return endpoint.answer(state, request)

    return _app(state, "api", API_PREFIX, answer, control)


def storage_app(state: EmulatorState) -> web.Application:
    """Where results are fetched, no key needed: object storage, ``GET
    /results/<task id>_result.png`` for done tasks (and media clips), and Midjourney's
    result host, ``GET /task/image/<task id>?cache=<percent>``."""

    def answer(request: RecordedRequest, path: str) -> web.Response:
        image = _stored(state, path) if request.method == "GET" else None
        if image is None:
            return web.Response(status=404, text="NoSuchKey: The specified key does not exist.")
        kind = mimetypes.guess_type(path)[0] or "image/png"  # Midjourney's have no suffix
        return web.Response(body=image, content_type=kind)

    return _app(state, "storage", "", answer)


def _stored(state: EmulatorState, path: str) -> bytes | None:
    """The file at ``path`` of the storage origin, if there is one."""
    folder, _, name = path.rpartition("/")
    if folder == "task/image":
        return state.task_image(name)
    return state.result_file(name) if folder == "results" else None


def _app(
    state: EmulatorState,
    server: Server,
    prefix: str,
    answer: Answer,
    control: Sequence[web.RouteDef] = (),
) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=await request.read(),
        )
        state.record(server, record)
        path = request.path.removeprefix(f"{prefix}/")
        fault = state.take_fault(server, path)
        if fault is not None:
            faulty = await _misbehave(request, fault)
            if faulty is not None:
                return faulty
        return answer(record, path)

    app = web.Application()
    app.router.add_routes(control)  # first: the catch-all below would take them otherwise
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _misbehave(request: web.Request, fault: Fault) -> web.Response | None:
    """Apply ``fault``: the answer to send instead of the real one, if any."""
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.drop:
        if request.transport is not None:
            request.transport.abort()
        return web.Response()
    if fault.status is None:
        return None
    headers: Mapping[str, str] = (
        {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    )
    if isinstance(fault.body, str | bytes):
        raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
        return web.Response(status=fault.status, body=raw, headers=headers)
    body = fault.body if fault.body is not None else error_body(fault.status)
    return web.json_response(body, status=fault.status, headers=headers)
