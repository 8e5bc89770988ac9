"""The API key goes to ``base_url``'s origin only, and never shows in a log line (at DEBUG,
from any library), a ``repr``, an exception's text, its chain or its traceback, even when
the server echoes the key back in every place it can.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gptunnel_async import GPTunnelClient, GPTunnelError, PollPolicy, TaskFailedError
from gptunnel_async._sansio.responses import decode_media_task, decode_task, error_from_response

from . import faults
from .conftest import ScriptedAPI, loopback_server, task_json

KEY = "Zq9xT3-secret-mK7pW2vL"
KEY_PREFIX = KEY[:6]
"""Long enough to be unique here: finding it means some text held a piece of the key."""

POLICY = PollPolicy(initial=0.01, multiplier=1.0, max_interval=0.01, jitter=0.0, timeout=5.0)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000


def echo(status: int, where: str = "message") -> faults.Reply:
    """An error answer that hands the key back in a JSON field, or in raw text."""
    if where == "raw":
        return faults.answer(status, f"<html>bad key {KEY}</html>", {"Content-Type": "text/html"})
    fields = {"message": "m", "type": "t", "param": "p", "code": "c"}
    fields[where] = f"{'x' * 190}{KEY} is wrong"  # the key straddles any 200-char cut
    return faults.answer(status, {"error": fields})


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Every text an exception shows: its traceback, and for each exception in its chain
    (``__cause__`` and ``__context__``), its ``str``, ``repr``, arguments and attributes
    (``rich.inspect`` and debuggers show each)."""
    yield "".join(traceback.format_exception(exc))
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield repr(getattr(current, "__dict__", {}))
        pending += [current.__cause__, current.__context__]


def assert_no_key(texts: list[str]) -> None:
    leaking = [text for text in texts if KEY_PREFIX in text]
    assert leaking == [], f"{len(leaking)} texts hold the key, e.g. {leaking[0][:400]!r}"


@pytest.fixture
async def storage() -> AsyncIterator[str]:
    """Another loopback origin serving ``/result.png``; yields its root URL."""

    async def serve(request: web.Request) -> web.Response:
        assert "Authorization" not in request.headers
        if request.path != "/result.png":
            return web.Response(status=404)
        return web.Response(body=PNG, content_type="image/png")

    async with loopback_server(serve) as server:
        yield str(server.make_url("/"))


async def test_the_key_never_leaks_through_a_run_full_of_errors_retries_waits_and_downloads(
    api: ScriptedAPI,
    storage: str,
    tmp_path: Path,
    recorded_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: aiohttp, asyncio, tenacity, ours
    asyncio.get_running_loop().set_debug(True)
    errors: list[GPTunnelError] = []
    client = GPTunnelClient(api_key=KEY, base_url=api.base_url, timeout=0.5, poll_policy=POLICY)

    async def expect_error(operation: Any) -> None:
        try:
            await operation
        except GPTunnelError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected an error")

    async def redirect_to_storage(request: web.Request) -> web.Response:
        raise web.HTTPFound(storage + "result.png")

    async with client:
        for where in ("message", "type", "param", "code", "raw"):
            api.replies[:] = [echo(401, where)]
            await expect_error(client.get_result("task-1"))
        api.replies[:] = [echo(500, "raw")]  # retried, then raised
        await expect_error(client.get_result("task-1"))
        api.replies[:] = [faults.not_http()]  # aiohttp keeps the request headers on this one
        await expect_error(client.get_result("task-1"))
        for page in (f"<html>proxy saw {KEY}</html>", {"error": f"invalid key {KEY}"}):
            api.replies[:] = [faults.answer(200, page)]
            await expect_error(client.get_result("task-1"))
        api.replies[:] = [
            task_json(status="running", percent=10),
            echo(503, "raw"),
            faults.reset(),
            faults.answer(200, f"<html>{KEY}</html>"),
            task_json(status="running", percent=60),
            task_json(status="done", percent=100),
        ]
        events = [event async for event in client.wait_for_result("task-1")]
        api.replies[:] = [task_json(status="running", percent=5)]
        await expect_error(client.wait_for_result("task-1", timeout=0.05))
        api.replies[:] = [task_json(status="failed", error=f"rejected key {KEY}")]
        await expect_error(client.wait_for_result("task-1"))
        api.replies[:] = [echo(404, "raw")]  # a download from the API's own origin
        await expect_error(client.download_result(api.base_url + "/files/x.png", tmp_path))
        api.replies[:] = [redirect_to_storage]
        saved = await client.download_result(api.base_url + "/files/y.png", tmp_path / "y.png")

    assert events[-1].is_done
    assert saved.read_bytes() == PNG
    assert len(errors) == 12
    assert len(recorded_sleeps) >= 6  # retries happened, and were logged
    assert api.requests[0]["headers"]["Authorization"] == KEY  # it was sent where it belongs
    assert "Authorization" not in api.requests[-1]["headers"]  # never with a result fetch
    texts = [caplog.handler.format(record) for record in caplog.records]
    assert any("aiohttp" in record.name for record in caplog.records)  # all loggers heard
    assert any(record.levelno == logging.WARNING for record in caplog.records)
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    for error in errors:
        texts += exception_texts(error)
    texts += [repr(client), str(client), repr(client.faceswap), repr(client.poll_policy)]
    unstarted = client.wait_for_result("task-1")
    texts += [repr(unstarted), repr(events), str(vars(client))]
    unstarted.close()
    # what pickles (errors, events, tasks) holds no key: the rest refuses (test_in_process)
    texts += [pickle.dumps(kept).decode("latin-1") for kept in [*errors, *events]]
    assert_no_key(texts)


@pytest.mark.parametrize("where", ["message", "type", "param", "code", "raw"])
def test_an_echoed_key_is_masked_in_every_error_field_before_it_is_shortened(where: str) -> None:
    reply_body = {"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}
    text = f"{'x' * 190}{KEY} is wrong"
    if where == "raw":
        body = text.encode()
    else:
        reply_body["error"][where] = text
        body = str(reply_body).replace("'", '"').encode()
    error = error_from_response(401, {}, body, secret=KEY)
    assert_no_key([str(error), repr(error), repr(vars(error))])


def test_a_decode_error_excerpt_masks_the_key() -> None:
    with pytest.raises(GPTunnelError) as caught:
        decode_task(f'{{"error": "invalid key {KEY}"}}'.encode(), status_code=200, secret=KEY)
    assert_no_key(list(exception_texts(caught.value)))


@pytest.mark.parametrize(
    "body",
    [
        {"code": 2, "message": f"token {KEY} is invalid"},
        {"code": "seven", "message": f"token {KEY}"},
        {"code": 0, "id": "m1", "status": "failed", "message": f"token {KEY} refused"},
    ],
    ids=["error-code", "unreadable-code", "failed-task"],
)
def test_media_answers_mask_the_key(body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    try:
        task = decode_media_task(raw, 200, secret=KEY)
    except GPTunnelError as error:
        assert_no_key(list(exception_texts(error)))
    else:
        assert_no_key([repr(task), str(TaskFailedError(task))])
