"""Webhooks against the emulator: delivered, dropped and forged, and the parse that trusts
only the receiver's token."""

from __future__ import annotations

import asyncio
import gc
import hmac
import io
import json
import logging
import re
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from gptunnel_async import (
    APIError,
    ConfigurationError,
    GPTunnelClient,
    ResponseDecodeError,
    Task,
    TaskFailedError,
    WaitTimeoutError,
    WebhookVerificationError,
    webhooks,
)
from gptunnel_async.instrumentation import Hook, WaitFinished, WaitStarted, get_hooks, set_hooks
from gptunnel_async.testing import FakeGPTunnel, sample_image
from gptunnel_async.webhooks import (
    MAX_WEBHOOK_BYTES,
    TOKEN_PARAM,
    WebhookReceiver,
    parse_webhook,
)

from .conftest import announced_only, task_json

SECRET = "a-secret-of-more-than-sixteen-characters"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGPTunnel]:
    async with FakeGPTunnel() as emulator:
        yield emulator


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A receiver mounted on a loopback aiohttp app, as a bot would mount it."""
    app = web.Application()
    server = TestServer(app)
    holder: list[WebhookReceiver] = []

    async def route(request: web.Request) -> web.StreamResponse:
        return await holder[0].handler(request)

    app.router.add_post("/gptunnel/webhook", route)
    await server.start_server()
    holder.append(WebhookReceiver(str(server.make_url("/gptunnel/webhook"))))
    yield holder[0]
    await server.close()


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    async with fake.client() as tunnel:
        yield tunnel


async def create(client: GPTunnelClient, receiver: WebhookReceiver) -> str:
    face = sample_image("face.png")
    task = await client.faceswap.create(sample_image("source.png"), face, webhook=receiver.url)
    return task.id


def reads_of(fake: FakeGPTunnel, task_id: str) -> int:
    return sum(1 for r in fake.requests if r.query.get("taskId") == task_id)


# -- delivered, dropped, forged -----------------------------------------------------------


@pytest.mark.parametrize("interval", [86401, 1e9, 0.001, float("nan"), "30", True])
async def test_a_fallback_interval_out_of_bounds_is_refused_by_its_own_name(
    client: GPTunnelClient, receiver: WebhookReceiver, interval: Any
) -> None:
    """Over a day it was refused as PollPolicy's "initial", a name the caller never used."""
    with pytest.raises(ConfigurationError, match=r"^fallback_interval must be"):
        await receiver.wait_for_result(client.faceswap, "t-1", fallback_interval=interval)


async def test_a_delivered_webhook_ends_the_wait_without_more_polling(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.3)
    task_id = await create(client, receiver)
    task = await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=60)
    assert task.is_done
    assert task.result
    assert reads_of(fake, task_id) == 1  # the first read only; the push did the rest
    (delivery,) = fake.webhook_deliveries
    assert delivery.query[TOKEN_PARAM] == receiver.secret
    assert delivery.json["id"] == task_id


async def test_a_lost_delivery_is_made_up_for_by_the_fallback_poll(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.2)
    fake.drop_next(server="webhook")
    task_id = await create(client, receiver)
    task = await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=0.3)
    assert task.is_done
    assert fake.webhook_deliveries == []
    assert reads_of(fake, task_id) >= 2


async def test_a_forged_webhook_is_refused_and_ends_nothing(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.6)
    task_id = await create(client, receiver)
    waiting = asyncio.create_task(
        receiver.wait_for_result(client.faceswap, task_id, fallback_interval=60)
    )
    await asyncio.sleep(0.05)
    public = receiver.url.split("?")[0]
    wrong = f"{public}?{TOKEN_PARAM}={'x' * len(receiver.secret)}"
    assert await fake.forge_webhook(wrong, task_id=task_id, status="failed") == 403
    assert await fake.forge_webhook(public, task_id=task_id, status="failed") == 403
    await asyncio.sleep(0.1)
    assert not waiting.done()
    task = await waiting  # the real delivery still comes, and it says done
    assert task.is_done


async def test_a_delivered_failure_raises_task_failed_error(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.2, error="no face found")
    task_id = await create(client, receiver)
    with pytest.raises(TaskFailedError, match="no face found"):
        await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=60)


async def test_a_webhook_that_arrives_before_the_wait_is_kept_for_it(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.0)
    task_id = await create(client, receiver)
    for _ in range(500):  # until the delivery has been made
        if fake.webhook_deliveries:
            break
        await asyncio.sleep(0.01)
    reads_before = reads_of(fake, task_id)
    task = await receiver.wait_for_result(client.faceswap, task_id)
    assert task.is_done
    assert reads_of(fake, task_id) == reads_before  # answered from the delivery


async def test_the_hybrid_wait_keeps_its_deadline(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=30)
    task_id = await create(client, receiver)
    with pytest.raises(WaitTimeoutError) as caught:
        await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=0.1, timeout=0.3)
    assert caught.value.task is not None  # the last state the fallback poll saw


# -- the receiver on its own ----------------------------------------------------------------


def body(**fields: Any) -> bytes:
    return json.dumps(task_json(**fields)).encode()


def test_parse_webhook_accepts_the_token_and_returns_the_task() -> None:
    task = parse_webhook(body(status="done", percent=100), SECRET, secret=SECRET)
    assert task.is_done


@pytest.mark.parametrize("token", [None, "", "wrong", SECRET[:-1], SECRET + "x", SECRET.upper()])
def test_parse_webhook_refuses_a_missing_or_wrong_token(token: str | None) -> None:
    with pytest.raises(WebhookVerificationError):
        parse_webhook(body(status="done"), token, secret=SECRET)


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    parse_webhook(body(status="done"), SECRET, secret=SECRET)
    with pytest.raises(WebhookVerificationError):
        parse_webhook(body(status="done"), "guess", secret=SECRET)
    assert compared == [(SECRET.encode(), SECRET.encode()), (b"guess", SECRET.encode())]


def test_parse_webhook_refuses_a_body_that_is_not_a_task() -> None:
    with pytest.raises(ResponseDecodeError):
        parse_webhook(b"<html>hello</html>", SECRET, secret=SECRET)


async def test_the_handler_answers_403_400_413_and_200(
    receiver: WebhookReceiver, http_session: aiohttp.ClientSession
) -> None:
    async def post(url: str, data: bytes) -> int:
        async with http_session.post(url, data=io.BytesIO(data)) as response:
            return response.status

    assert await post(receiver.url, b"{}") == 400
    assert await post(receiver.url.split("?")[0], body(status="done")) == 403
    assert await post(receiver.url, b" " * (MAX_WEBHOOK_BYTES + 1)) == 413
    assert await post(receiver.url, body(status="done", percent=100)) == 200


async def test_a_body_announced_over_the_bound_is_refused_before_it_is_sent(
    receiver: WebhookReceiver,
) -> None:
    """A ``Content-Length`` over 1 MiB is answered 413 at once, without waiting for a
    byte of the body, and the connection is not kept for another request."""
    answer = await announced_only(receiver.url, MAX_WEBHOOK_BYTES + 1)
    assert answer.split(b"\r\n")[0].split()[1] == b"413", answer
    assert b"Connection: close" in answer


@pytest.mark.parametrize("sent", [b"", b'{"id": "t'])
async def test_a_body_that_stops_coming_is_answered_408_and_its_connection_closed(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch, sent: bytes
) -> None:
    """A delivery whose body stops coming (a sender gone without closing, a slow-loris
    with the token) held the handler and its connection forever: aiohttp's server sets
    no deadline for a body. Past ``DELIVERY_BODY_TIME`` it is a 408, and the
    connection is closed, its waits untouched."""
    monkeypatch.setattr(webhooks, "DELIVERY_BODY_TIME", 0.05)
    answer = await announced_only(receiver.url, 100, sent)
    assert answer.split(b"\r\n")[0].split()[1] == b"408", answer
    assert b"Connection: close" in answer


def test_each_receiver_makes_its_own_secret_and_never_shows_it() -> None:
    one, two = (
        WebhookReceiver("https://bot.example/hook"),
        WebhookReceiver("https://bot.example/hook"),
    )
    assert one.secret != two.secret
    assert len(one.secret) >= 32
    assert one.url == f"https://bot.example/hook?{TOKEN_PARAM}={one.secret}"
    assert one.secret not in repr(one)


@pytest.mark.parametrize("userinfo", ["user:pw-of-the-hook@", "only-a-user-name@", ":pw-alone@"])
def test_a_password_in_the_public_url_is_never_shown_in_the_repr(userinfo: str) -> None:
    """The receiver's ``repr`` (in logs, in an error tracker's locals) hid the secret but
    showed ``public_url`` whole, its password too."""
    receiver = WebhookReceiver(f"https://{userinfo}bot.example/hook")
    assert repr(receiver) == "WebhookReceiver('https://***@bot.example/hook')"
    assert receiver.url.startswith(f"https://{userinfo}bot.example/hook?")  # sent as given


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("ftp://bot.example/hook", None),
        ("/hook", None),
        ("https://bot.example/h?x=1", None),
        ("https://bot.example/hook", "short"),
    ],
)
def test_nonsense_receivers_are_refused(url: str, secret: str | None) -> None:
    with pytest.raises(ConfigurationError):
        WebhookReceiver(url, secret=secret)


async def test_the_emulator_refuses_to_fail_a_webhook(fake: FakeGPTunnel) -> None:
    with pytest.raises(ConfigurationError, match="dropped or delayed"):
        fake.fail_next(500, server="webhook")


def test_the_example_in_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    docs = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text()
    example = docs.split("## Example", 1)[1]  # the section's one block
    (code,) = re.findall(r"```python\n(.*?)```", example.split("\n## ", 1)[0], flags=re.S)
    exec(compile(code, "webhooks.md", "exec"), {})
    assert capsys.readouterr().out == "done after 1 webhook and 1 read\n"


async def test_deliveries_nobody_waits_for_are_kept_within_a_size_bound() -> None:
    from gptunnel_async.webhooks import REMEMBERED_BYTES

    receiver = WebhookReceiver("https://bot.example/hook", secret=SECRET)
    big = "x" * 500_000
    for number in range(100):  # 50 MB of deliveries for tasks no wait has asked about
        body = json.dumps(task_json(status="failed", id=f"t{number}", error=big)).encode()
        receiver.receive(body, SECRET)
    kept = receiver._arrived
    assert receiver._arrived_bytes == sum(map(len, kept.values())) <= REMEMBERED_BYTES
    assert 0 < len(kept) < 40
    assert "t99" in kept and "t0" not in kept  # the oldest went first
    async with GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(TaskFailedError):  # a kept one is found without a request
            await receiver.wait_for_result(client.faceswap, "t99")
    assert "t99" not in receiver._arrived


UNREADABLE_BODIES: dict[str, tuple[dict[str, str], bytes]] = {
    "gzip that is not": ({"Content-Encoding": "gzip"}, b"\x1f\x8b" + b"\x00" * 18),
    "deflate that is not": ({"Content-Encoding": "deflate"}, b"garbage!!!"),
    "br that is not": ({"Content-Encoding": "br"}, b"\xff" * 12),
}


async def _raw_post(url: str, headers: dict[str, str], data: bytes) -> bytes:
    """POST ``data`` as it is (an HTTP client would encode it): the answer's status line."""
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(
        f"POST {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n{head}"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    try:
        return await reader.readline()
    finally:
        writer.close()


@pytest.mark.parametrize(("headers", "data"), UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES)
async def test_a_coded_body_that_cannot_be_read_is_refused_without_a_500(
    receiver: WebhookReceiver,
    headers: dict[str, str],
    data: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused 415 unread, as every coded body is (``tests/test_webhook_bodies.py``);
    on this default server aiohttp's parser refuses a ``br`` body itself (400) when
    brotli is not installed, before the handler."""
    caplog.set_level(logging.ERROR, logger="aiohttp.server")
    status_line = await _raw_post(receiver.url, headers, data)
    await asyncio.sleep(0.1)  # aiohttp's own reading on, after the answer, would log now
    if "br" not in headers.values():  # br is refused by aiohttp's parser, before the handler
        assert [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"] == []
        assert status_line.split()[1:2] == [b"415"], status_line
    assert status_line.split()[1:2] in ([b"400"], [b"415"]), status_line  # not a 500


@pytest.mark.parametrize("delivered", [True, False])
async def test_a_task_that_echoes_the_callback_url_never_shows_the_token(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver, delivered: bool
) -> None:
    """GPTunnel's task may quote the URL it calls back (a media task's input, an error
    about the call): the wait's error, by the push or by the fallback poll, masks it."""
    fake.script_created(duration=0.2, error=f"could not call {receiver.url}")
    if not delivered:
        fake.drop_next(server="webhook")
    task_id = await create(client, receiver)
    with pytest.raises(TaskFailedError) as caught:
        await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=0.3)
    assert "token=***" in str(caught.value)
    assert receiver.secret not in f"{caught.value} {caught.value.task!r}"
    assert bool(fake.webhook_deliveries) is delivered


def _echoing(url: str) -> list[dict[str, Any]]:
    """Bodies that quote the callback ``url`` in each text a model or an error keeps."""
    return [
        {"id": "t1", "object": "task", "status": "failed", "error": f"call {url} failed"},
        {"id": "t2", "object": "task", "status": "done", "result": url},
        {"code": 0, "id": "m1", "model": "suno", "status": "failed", "error": f"no {url}"},
        {"code": 0, "id": "m2", "model": "suno", "status": "done", "result": url},
        {"code": 3, "message": f"bad webhook {url}", "issues": [{"path": ["w"], "received": url}]},
        {"code": 1001, "message": f"refused {url}"},
        {"id": url, "object": "task", "status": "done"},
        {"object": "list", "data": url},
    ]


@pytest.mark.parametrize("index", range(len(_echoing(""))))
async def test_a_delivery_that_echoes_the_callback_url_never_shows_the_token(
    client: GPTunnelClient, index: int
) -> None:
    receiver = WebhookReceiver("https://bot.example/hook", secret=SECRET)
    body = json.dumps(_echoing(receiver.url)[index]).encode()
    for parse in (
        lambda: receiver.receive(body, SECRET),
        lambda: parse_webhook(body, SECRET, secret=SECRET, family=client.media),
        lambda: parse_webhook(body, SECRET, secret=SECRET, family=client.faceswap),
    ):
        try:
            shown = repr(parse())
        except (ResponseDecodeError, APIError) as exc:
            shown = f"{exc} {exc!r} {vars(exc)!r}"
        assert SECRET not in shown


# -- what the instrumentation hooks see of a webhook wait ------------------------------------


class WaitEnds(Hook):
    """Records each wait's start and end, as a metrics hook sees them."""

    def __init__(self) -> None:
        self.started: list[WaitStarted] = []
        self.finished: list[WaitFinished] = []

    def on_wait_started(self, details: WaitStarted) -> None:
        self.started.append(details)

    def on_wait_finished(self, details: WaitFinished) -> None:
        self.finished.append(details)


@pytest.fixture
def wait_ends() -> Iterator[WaitEnds]:
    before = get_hooks()
    hook = WaitEnds()
    set_hooks([hook])
    yield hook
    set_hooks(before)


async def test_a_wait_a_delivery_ends_is_reported_done_not_cancelled(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver, wait_ends: WaitEnds
) -> None:
    """Every wait a webhook ended was counted as ``cancelled`` (gptunnel_waits_total)."""
    fake.script_created(duration=0.3)
    task_id = await create(client, receiver)
    await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=60)
    (started,) = wait_ends.started
    (finished,) = wait_ends.finished
    assert (finished.task_id, finished.outcome, finished.status) == (task_id, "done", "done")
    assert finished.wait_id == started.wait_id
    assert finished.reads == 1 and finished.error is None


async def test_a_delivered_failure_is_reported_failed(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver, wait_ends: WaitEnds
) -> None:
    fake.script_created(duration=0.2, error="no face found")
    task_id = await create(client, receiver)
    with pytest.raises(TaskFailedError):
        await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=60)
    (finished,) = wait_ends.finished
    assert (finished.outcome, finished.error) == ("failed", "TaskFailedError")


async def test_a_wait_a_kept_delivery_answers_is_reported_once_without_reads(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver, wait_ends: WaitEnds
) -> None:
    """A wait answered from a delivery that came before it was not reported at all."""
    fake.script_created(duration=0.0)
    task_id = await create(client, receiver)
    for _ in range(500):
        if fake.webhook_deliveries:
            break
        await asyncio.sleep(0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "never awaited" warning from the unused poll
        await receiver.wait_for_result(client.faceswap, task_id)
        gc.collect()
    assert [(s.task_id, s.family) for s in wait_ends.started] == [(task_id, "faceswap")]
    (finished,) = wait_ends.finished
    assert (finished.outcome, finished.reads) == ("done", 0)


async def test_a_wait_the_fallback_poll_ends_is_reported_as_the_poll_saw_it(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver, wait_ends: WaitEnds
) -> None:
    fake.script_created(duration=0.2)
    fake.drop_next(server="webhook")
    task_id = await create(client, receiver)
    await receiver.wait_for_result(client.faceswap, task_id, fallback_interval=0.3)
    (finished,) = wait_ends.finished
    assert finished.outcome == "done" and finished.reads >= 2


# -- many webhook waits at once ---------------------------------------------------------------


async def test_as_completed_yields_each_task_as_its_webhook_ends_it(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.6)
    slow = await create(client, receiver)
    fake.script_created(duration=0.2)
    quick = [await create(client, receiver) for _ in range(2)]
    async with receiver.as_completed(client.faceswap, [slow, *quick], fallback_interval=60) as done:
        finished = [task.id async for task in done]
    assert sorted(finished[:2]) == sorted(quick) and finished[2] == slow
    assert [reads_of(fake, task_id) for task_id in (slow, *quick)] == [1, 1, 1]


async def test_leaving_as_completed_early_leaves_no_wait_behind(
    fake: FakeGPTunnel, receiver: WebhookReceiver
) -> None:
    """With asyncio.as_completed over receiver.wait_for_result, the waits left went on
    polling, and failed with "Task exception was never retrieved" once the client closed."""
    fake.script_created(duration=0.1)
    async with fake.client() as client:
        first = await create(client, receiver)
        fake.script_created(duration=30)
        stuck = [await create(client, receiver) for _ in range(3)]
        waits = receiver.as_completed(client.faceswap, [first, *stuck], fallback_interval=0.05)
        async with waits:
            async for task in waits:
                assert task.id == first
                break
        reads = len(fake.requests)
        await asyncio.sleep(0.2)
        assert len(fake.requests) == reads  # nothing polls on


async def test_wait_many_returns_in_order_with_failures_in_place(
    fake: FakeGPTunnel, client: GPTunnelClient, receiver: WebhookReceiver
) -> None:
    fake.script_created(duration=0.3)
    slow = await create(client, receiver)
    fake.script_created(duration=0.1, error="no face found")
    failing = await create(client, receiver)
    outcomes = await receiver.wait_many(
        client.faceswap, [slow, failing], fallback_interval=60, return_exceptions=True
    )
    assert isinstance(outcomes[0], Task) and outcomes[0].id == slow and outcomes[0].is_done
    assert isinstance(outcomes[1], TaskFailedError) and outcomes[1].task_id == failing
    with pytest.raises(TaskFailedError, match="no face found"):
        await receiver.wait_many(client.faceswap, [failing], fallback_interval=60)


@pytest.mark.parametrize(
    ("task_ids", "options", "message"),
    [
        ("t-1", {}, "not one string"),
        (["t-1", " "], {}, "task_id"),
        (["t-1"], {"fallback_interval": 0}, "^fallback_interval must be"),
        (["t-1"], {"timeout": -1}, "timeout"),
        (["t-1"], {"return_exceptions": "false"}, "return_exceptions must be a bool"),
    ],
)
async def test_many_waits_check_their_arguments_before_any_read(
    fake: FakeGPTunnel,
    client: GPTunnelClient,
    receiver: WebhookReceiver,
    task_ids: Any,
    options: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        receiver.as_completed(client.faceswap, task_ids, **options)
    with pytest.raises(ConfigurationError, match=message):
        await receiver.wait_many(client.faceswap, task_ids, **options)
    assert fake.requests == []
