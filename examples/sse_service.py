"""A web service that starts face swaps and streams their progress to the browser as
server-sent events.

    python -m examples.sse_service               # GPTunnel, with GPTUNNEL_API_KEY
    python -m examples.sse_service --emulator    # the built-in emulator: no key, no cost

Then open http://127.0.0.1:8080, pick two photos, and watch the bar fill.

- ``POST /swaps`` (a form with ``source`` and ``face`` images) starts a face swap and
  answers ``201 {"id": ..., "events": "/swaps/<id>/events"}``.
- ``GET /swaps/{id}/events`` is an ``text/event-stream``: a ``progress`` event per
  change, then ``done`` with the result's URL, or ``failed`` with the reason. A
  browser that goes away stops the wait.

It has no authentication: put it behind your own before it faces the internet.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

from aiohttp import web

from gptunnel_async import (
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    NotFoundError,
    TaskFailedError,
    WaitTimeoutError,
)

from .emulated import emulated_client

Connect: TypeAlias = Callable[[], contextlib.AbstractAsyncContextManager[GPTunnelClient]]
"""Makes the app's client when it starts; the client is closed when the app stops."""

CLIENT = web.AppKey("client", GPTunnelClient)

MAX_UPLOAD = 25 * 1024 * 1024
"""Two photos of up to 10 MiB each (the API's limit), plus the form's overhead."""

logger = logging.getLogger(__name__)


async def index(request: web.Request) -> web.Response:
    """The page: a form for two photos, and a progress bar fed by server-sent events."""
    return web.Response(text=PAGE, content_type="text/html")


async def start_swap(request: web.Request) -> web.Response:
    """Start a face swap from the uploaded ``source`` and ``face`` images."""
    form = await request.post()
    images = []
    for name in ("source", "face"):
        field = form.get(name)
        if not isinstance(field, web.FileField):
            return _json_error(400, f"the form needs an image file named {name!r}")
        images.append(field.file.read())
    try:
        task = await request.app[CLIENT].faceswap.create(*images)
    except ConfigurationError as exc:  # not a PNG, JPEG or WEBP, or too large
        return _json_error(400, str(exc))
    except GPTunnelError as exc:
        logger.warning("could not start a face swap: %s", exc)
        return _json_error(502, "GPTunnel could not start the face swap; try again later")
    events = request.app.router["events"].url_for(id=task.id)
    return web.json_response({"id": task.id, "events": str(events)}, status=201)


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Stream one task's progress as server-sent events until it is done or has failed."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    task_id = request.match_info["id"]
    try:
        async with contextlib.aclosing(request.app[CLIENT].wait_for_result(task_id)) as events:
            async for event in events:
                progress = {"status": event.status, "percent": event.percent}
                await _send(response, "progress", {**progress, "elapsed": round(event.elapsed, 2)})
        await _send(response, "done", {"result": event.task.result})
    except ConnectionResetError:
        logger.info("the browser stopped listening to %s; the wait is closed", task_id)
    except GPTunnelError as exc:
        await _send(response, "failed", {"error": _describe(exc)})
    return response


def _describe(exc: GPTunnelError) -> str:
    """What the page shows when a wait ends without a result."""
    if isinstance(exc, TaskFailedError):
        return exc.task.error or "GPTunnel could not swap these faces"
    if isinstance(exc, WaitTimeoutError):
        return "it took too long; try again later"
    if isinstance(exc, NotFoundError):
        return "there is no such face swap"
    logger.warning("a wait ended: %s", exc)
    return "GPTunnel is unavailable; try again later"


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    """One server-sent event; raises ``ConnectionResetError`` once the browser has gone."""
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def create_app(connect: Connect = GPTunnelClient) -> web.Application:
    """The service's application.

    Args:
        connect: makes the GPTunnel client when the app starts; the client is closed
            when the app stops. The default, ``GPTunnelClient``, reads
            ``GPTUNNEL_API_KEY``; tests pass ``gptunnel_fake.client``.

    Returns:
        An aiohttp application serving ``/``, ``POST /swaps`` and ``/swaps/{id}/events``.
    """

    async def client_context(app: web.Application) -> AsyncIterator[None]:
        async with connect() as client:
            app[CLIENT] = client
            yield

    app = web.Application(client_max_size=MAX_UPLOAD)
    app.cleanup_ctx.append(client_context)
    app.router.add_get("/", index)
    app.router.add_post("/swaps", start_swap)
    app.router.add_get("/swaps/{id}/events", stream_events, name="events")
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve on ``--host`` and ``--port`` until interrupted."""
    parser = argparse.ArgumentParser(description="Face swaps with progress as server-sent events.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app(emulated_client if args.emulator else GPTunnelClient)
    # A browser that goes away cancels its handler, and with it the wait.
    web.run_app(app, host=args.host, port=args.port, handler_cancellation=True)


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Face swap</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; }
  progress { width: 100%; }
  img { max-width: 100%; margin-top: 1rem; }
</style>
<h1>Face swap</h1>
<form id="form">
  <p><label>The person: <input type="file" name="source" accept="image/*" required></label></p>
  <p><label>The face: <input type="file" name="face" accept="image/*" required></label></p>
  <p><button>Swap</button></p>
</form>
<progress id="bar" max="100" value="0" hidden></progress>
<p id="status"></p>
<img id="result" alt="" hidden>
<script>
const form = document.getElementById("form");
const bar = document.getElementById("bar");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");

form.addEventListener("submit", async (submit) => {
  submit.preventDefault();
  form.querySelector("button").disabled = true;
  statusLine.textContent = "Uploading…";
  const answer = await fetch("/swaps", { method: "POST", body: new FormData(form) });
  const body = await answer.json();
  if (!answer.ok) {
    statusLine.textContent = body.error;
    form.querySelector("button").disabled = false;
    return;
  }
  bar.hidden = false;
  const events = new EventSource(body.events);
  const finish = (text) => {
    events.close();  // else the browser would reconnect and wait again
    statusLine.textContent = text;
    form.querySelector("button").disabled = false;
  };
  events.addEventListener("progress", (message) => {
    const progress = JSON.parse(message.data);
    bar.value = progress.percent;
    statusLine.textContent = `${progress.status}: ${progress.percent} %`;
  });
  events.addEventListener("done", (message) => {
    result.src = JSON.parse(message.data).result;
    result.hidden = false;
    finish("Done.");
  });
  events.addEventListener("failed", (message) => {
    finish(`No result: ${JSON.parse(message.data).error}.`);
  });
});
</script>
</html>
"""

if __name__ == "__main__":
    main()
