"""The emulator's two aiohttp applications: the API under ``/v1``, and the storage origin.

Every request is logged first, then meets the queued faults, then (on the API) the
bare-key ``Authorization`` check, and only then its endpoint. Under ``/v1/media/`` the
key check and a request no endpoint takes are answered as ``/media`` answers every
error, with HTTP 200 and a ``code`` (2, 99); elsewhere with a status (401, 404, 405).
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._images import MAX_IMAGE_BYTES
from .._sansio.numbers import is_digits
from ._endpoints import (
    ENDPOINTS,
    Endpoint,
    error_body,
    error_response,
    is_media_path,
    media_error_response,
)
from ._state import EmulatorState, Fault, RecordedRequest, Server

__all__ = ["API_PREFIX", "api_app", "storage_app"]

API_PREFIX: Final = "/v1"

MAX_REQUEST_BYTES: Final = 2 * (4 * MAX_IMAGE_BYTES // 3 + 1024) + 1024 * 1024
"""The largest request body the emulator takes, in bytes: a face swap of two images of
the SDK's own largest size, inline as base64 data URIs (a third more each), and a
MiB for the rest. GPTunnel's limit is not documented; aiohttp's default (1 MiB)
refused a face swap of two 400 KB photos."""
"""The path of the base URL, as on the real service."""

Answer = Callable[[RecordedRequest, str], web.Response]


def api_app(state: EmulatorState, control: Sequence[web.RouteDef] = ()) -> web.Application:
    """The API: :data:`ENDPOINTS` under ``/v1``, behind the bare-key check; ``control``
    routes (the emulator's own, unlogged) before them.

    A missing or wrong key is a 401 ``unauthorized_request_error``, and under
    ``/v1/media/`` HTTP 200 with code 2, "Invalid token" (docs.gptunnel.ru/media-api/models,
    media errors: "Always HTTP 200; body code: ... 2 invalid token").
    """
    routes: dict[str, dict[str, Endpoint]] = {}
    for endpoint in ENDPOINTS:
        routes.setdefault(endpoint.path, {})[endpoint.method] = endpoint

    def answer(request: RecordedRequest, path: str) -> web.Response:
        on_api = request.path.startswith(f"{API_PREFIX}/")
        media = on_api and is_media_path(path)
        if request.headers.get("Authorization") != state.api_key:
            return media_error_response(401) if media else error_response(401)
        methods = routes.get(path) if on_api else None
        endpoint = methods.get(request.method) if methods is not None else None
        if endpoint is None:
            return _unrouted(request, methods, media=media)
        return _results_where_asked(state, request, endpoint.answer(state, request))

    return _app(state, "api", API_PREFIX, answer, control)


WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::"})
"""Addresses that mean "every address of this machine": listening there, the emulator
has no one address its result URLs could name."""

_HOST: Final = re.compile(r"[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\]")
"""A ``Host`` header's host part that may stand in a result URL as it is: a name, an
IPv4 address or a bracketed IPv6 one (nothing a JSON string would need escaped)."""


def _results_where_asked(
    state: EmulatorState, request: RecordedRequest, response: web.Response
) -> web.Response:
    """``response`` with its result URLs on the host ``request`` was sent to, when the
    emulator listens on every address (``--host 0.0.0.0``): there, ``0.0.0.0`` in a
    result URL would send a client on another machine or container to itself. A client
    that reached the API as ``http://emulator:8080`` fetches results from
    ``http://emulator:<storage port>``."""
    listening = URL(state.storage_url)
    if listening.host not in WILDCARD_HOSTS or not isinstance(response.body, bytes):
        return response
    given = request.headers.get("Host", "")
    host, _, port = given.rpartition(":")
    if not is_digits(port):  # no port (1*DIGIT, RFC 3986): the whole header is the host
        host = given
    if not _HOST.fullmatch(host):
        return response
    old = str(listening.origin()).encode()
    response.body = response.body.replace(old, f"http://{host}:{listening.port}".encode())
    return response


def _unrouted(
    request: RecordedRequest, methods: Mapping[str, Endpoint] | None, *, media: bool
) -> web.Response:
    """The answer to a request no endpoint takes (``methods``: the endpoints at its path).

    ``/media`` answers it as every error, with HTTP 200: code 99, "method not found",
    for a path under ``/v1/media/`` it lacks and a wrong HTTP method alike
    (docs.gptunnel.ru/media-api/models: media errors are "always HTTP 200", code 99
    "method not found"; which requests get 99 is not documented). Elsewhere a path the API lacks
    gets a web server's plain-text 404, not the API's JSON, and a wrong method a 405
    with ``Allow``.
    """
    if media:
        return media_error_response(405)
    if methods is None:
        return web.Response(status=404, text=f"Cannot {request.method} {request.path}")
    return error_response(405, headers={"Allow": ", ".join(sorted(methods))})


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

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
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
