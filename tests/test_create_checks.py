"""Around every paid create: a ``webhook`` is checked before anything is sent, and a
created task id the SDK cannot use is the server's fault (``ResponseDecodeError``, the
command line's exit 4), never the caller's (``ConfigurationError``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import (
    BadRequestError,
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    ResponseDecodeError,
    ServerError,
    UsageError,
)
from gptunnel_async._checks import MAX_TASK_ID_LENGTH, MAX_WEBHOOK_URL_LENGTH, webhook_url
from gptunnel_async._sansio.responses import Created, decode_media_task, decode_task
from gptunnel_async._transport import MAY_HAVE_STARTED
from gptunnel_async.cli import EXIT_API_ERROR
from gptunnel_async.instrumentation import Hook, LoggingHook, RetryDetails, set_hooks
from gptunnel_async.testing import FakeGPTunnel

from . import faults
from .conftest import ScriptedAPI, media_json, task_json
from .test_cli import run

# -- webhook URLs ---------------------------------------------------------------------------

REFUSED_WEBHOOKS: list[Any] = [
    "ftp://x/h",
    "javascript:alert(1)",
    "not a url",
    "http://",
    "http://[::1",
    "https://bot.example/hook\n",
    "https://bot.example/ho ok",
    " https://bot.example/hook",
    "https://bot.example/\x1b[2Jhook",
    "https://bot.example/" + "x" * MAX_WEBHOOK_URL_LENGTH,
    "/relative/hook",
    "bot.example/hook",
    "",
    42,
    b"https://bot.example/hook",
]

ACCEPTED_WEBHOOKS = [
    "https://bot.example/hook",
    "http://127.0.0.1:8080/gptunnel/webhook?token=abc-DEF_123",
    "https://бот.example/хук",
    "https://bot.example/" + "x" * (MAX_WEBHOOK_URL_LENGTH - len("https://bot.example/")),
]


@pytest.mark.parametrize("value", REFUSED_WEBHOOKS)
def test_a_webhook_that_is_no_callback_url_is_refused(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="webhook"):
        webhook_url("webhook", value)


@pytest.mark.parametrize("value", ACCEPTED_WEBHOOKS)
def test_a_callback_url_is_sent_as_given(value: str) -> None:
    assert webhook_url("webhook", value) == value


@given(st.text(max_size=60) | st.text(max_size=20).map(lambda tail: f"https://h.example/{tail}"))
def test_any_webhook_is_a_usable_url_or_refused_briefly(value: str) -> None:
    try:
        checked = webhook_url("webhook", value)
    except ConfigurationError as exc:
        assert len(str(exc)) < 300  # noqa: PT017 (refused, and briefly)
        return
    url = URL(checked)
    assert url.scheme in ("http", "https")
    assert url.host
    assert checked.isprintable()
    assert not any(character.isspace() for character in checked)


CREATE_CALLS: dict[str, Callable[[GPTunnelClient, Any], Awaitable[Any]]] = {
    "faceswap.create": lambda c, hook: c.faceswap.create(
        "https://a/1.png", "https://a/2.png", webhook=hook
    ),
    "media.create": lambda c, hook: c.media.create("flux-pro", "a fox", webhook=hook),
    "create_task": lambda c, hook: c.bgremover.create_task("bgremover/create", {"webhook": hook}),
}


@pytest.mark.parametrize("call", CREATE_CALLS.values(), ids=CREATE_CALLS.keys())
@pytest.mark.parametrize("value", ["ftp://x/h", "not a url", "http://[::1", "x" * 5000])
async def test_no_create_is_sent_with_a_bad_webhook(
    client: GPTunnelClient, api: ScriptedAPI, call: Any, value: str
) -> None:
    api.script(task_json(status="idle"))
    with pytest.raises(ConfigurationError, match="webhook"):
        await call(client, value)
    assert api.requests == []


@pytest.mark.parametrize("call", CREATE_CALLS.values(), ids=CREATE_CALLS.keys())
async def test_a_good_webhook_goes_out_as_given(
    client: GPTunnelClient, api: ScriptedAPI, call: Any
) -> None:
    api.script(task_json(status="idle"))
    await call(client, "https://bot.example/hook?token=abc")
    assert json.loads(api.requests[0]["body"])["webhook"] == "https://bot.example/hook?token=abc"


# -- text that is not valid Unicode ---------------------------------------------------------

UNICODE_CALLS: dict[str, Callable[[GPTunnelClient, str], Awaitable[Any]]] = {
    "midjourney.imagine": lambda c, text: c.midjourney.imagine(f"a fox {text}"),
    "media.create model": lambda c, text: c.media.create(text, "a fox"),
    "media.create prompt": lambda c, text: c.media.create("flux-pro", text),
    "media.create ar": lambda c, text: c.media.create("flux-pro", "a fox", ar=text),
    "media.create option": lambda c, text: c.media.create("suno", "a", tags=["x", text]),
    "faceswap.create": lambda c, text: c.faceswap.create(f"https://a/{text}.png", IMAGES[1]),
    "create_task": lambda c, text: c.bgremover.create_task("bgremover/create", {"x": {text: 1}}),
}


@pytest.mark.parametrize("call", UNICODE_CALLS.values(), ids=UNICODE_CALLS.keys())
@given(
    text=st.tuples(
        st.text(max_size=3), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    ).map("".join)
)
async def test_no_create_is_sent_with_text_that_is_not_valid_unicode(call: Any, text: str) -> None:
    """A lone surrogate (a command line or a file name in an encoding other than UTF-8
    gives one) went out escaped in the JSON body, and a paid task started on text the
    server cannot read as sent."""
    async with FakeGPTunnel() as fake, fake.client() as client:
        with pytest.raises(ConfigurationError, match="not valid Unicode"):
            await call(client, text)
        assert fake.requests == []


def test_the_command_line_refuses_a_prompt_it_could_not_read_as_text() -> None:
    with FakeGPTunnel() as fake:
        done = run("imagine", "a fox \udcff", fake=fake)  # as Python reads a byte 0xFF
        assert fake.requests == []
    assert done.returncode == 2
    assert "prompt holds text that is not valid Unicode" in done.stderr


CREATE_AND_WAIT: dict[str, Callable[..., Awaitable[Any]]] = {
    "faceswap.swap": lambda c, **wait: c.faceswap.swap(
        "https://a/1.png", "https://a/2.png", **wait
    ),
    "midjourney.imagine_and_wait": lambda c, **wait: c.midjourney.imagine_and_wait("a fox", **wait),
    "media.generate": lambda c, **wait: c.media.generate("flux-pro", "a fox", **wait),
}

BAD_WAIT_ARGUMENTS: list[Any] = [
    pytest.param({"timeout": -1}, "timeout", id="a negative timeout"),
    pytest.param({"timeout": 0}, "timeout", id="a timeout run out (deadline - now)"),
    pytest.param({"timeout": float("nan")}, "timeout", id="a NaN timeout"),
    pytest.param({"policy": "fast"}, "policy", id="a policy that is none"),
    pytest.param({"on_progress": 5}, "on_progress", id="an on_progress that is no function"),
    pytest.param(
        {"on_progress": lambda: None}, "on_progress", id="an on_progress that takes no event"
    ),
]


@pytest.mark.parametrize("call", CREATE_AND_WAIT.values(), ids=CREATE_AND_WAIT.keys())
@pytest.mark.parametrize(("wait", "named"), BAD_WAIT_ARGUMENTS)
async def test_no_paid_task_is_created_for_a_wait_whose_arguments_are_wrong(
    client: GPTunnelClient, api: ScriptedAPI, call: Any, wait: dict[str, Any], named: str
) -> None:
    api.script(task_json(status="idle"), media_json(status="idle"))
    with pytest.raises(ConfigurationError, match=named):
        await call(client, **wait)
    assert api.requests == []  # the create was never sent (nor left unawaited: -W error)


# -- created task ids -----------------------------------------------------------------------

BAD_IDS = ["a" * (MAX_TASK_ID_LENGTH + 1), "", "   ", "\ud800abc"]


@pytest.mark.parametrize("task_id", BAD_IDS)
@pytest.mark.parametrize("decode", [decode_task, decode_media_task])
def test_a_created_id_the_sdk_cannot_use_is_a_decode_error(task_id: str, decode: Any) -> None:
    body = json.dumps({"id": task_id, "object": "task", "status": "idle"}).encode()
    with pytest.raises(ResponseDecodeError, match="the created task's id") as caught:
        Created(decode)(body, 200)
    assert caught.value.status_code == 200
    assert not isinstance(caught.value, ConfigurationError)


def test_a_usable_created_id_is_kept() -> None:
    body = json.dumps({"id": "a" * MAX_TASK_ID_LENGTH, "status": "idle"}).encode()
    assert Created(decode_task)(body, 200).id == "a" * MAX_TASK_ID_LENGTH


CREATES: dict[str, Callable[[GPTunnelClient], Awaitable[Any]]] = {
    "faceswap.create": lambda c: c.faceswap.create("https://a/1.png", "https://a/2.png"),
    "faceswap.swap": lambda c: c.faceswap.swap("https://a/1.png", "https://a/2.png"),
    "midjourney.imagine": lambda c: c.midjourney.imagine("a fox"),
    "midjourney.imagine_and_wait": lambda c: c.midjourney.imagine_and_wait("a fox"),
    "media.generate": lambda c: c.media.generate("flux-pro", "a fox"),
    "create_task": lambda c: c.midjourney.create_task("midjourney/reroll", {"taskId": "t"}),
}


@pytest.mark.parametrize("call", CREATES.values(), ids=CREATES.keys())
@pytest.mark.parametrize("task_id", BAD_IDS)
async def test_a_create_answered_with_an_unusable_id_is_the_servers_fault(
    client: GPTunnelClient, api: ScriptedAPI, call: Any, task_id: str
) -> None:
    api.script({"id": task_id, "object": "task", "status": "idle", "code": 0})
    with pytest.raises(ResponseDecodeError, match="the created task's id"):
        await call(client)
    assert len(api.requests) == 1  # no retry of a paid create, no wait on a bad id


def test_the_command_line_exits_4_on_an_unusable_created_id() -> None:
    with FakeGPTunnel(api_key="sk-live-0123456789abcdef") as fake:
        body = {"id": "a" * 300, "object": "task", "status": "idle", "percent": 0}
        fake.fail_next(200, body=body, path="midjourney/imagine")
        done = run("imagine", "a fox", fake=fake)
    assert done.returncode == EXIT_API_ERROR
    assert "usage" not in done.stderr
    assert "the created task's id is 300 characters" in done.stderr


# -- a webhook's secret token, echoed back ----------------------------------------------

TOKEN = "wh-7Qx2mK9pL4vR8sT1"
HOOK = f"https://bot.example/hook?token={TOKEN}"
IMAGES = ("https://example.com/me.jpg", "https://example.com/face.png")


def holds_token(value: object) -> bool:
    return TOKEN in repr(value) or TOKEN in str(value)


async def test_a_token_echoed_in_a_refusal_of_a_create_is_masked(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    refusal = {"error": {"message": f"webhook {HOOK} did not answer", "param": "webhook"}}
    api.script((400, refusal, {}))
    with pytest.raises(BadRequestError) as caught:
        await client.faceswap.create(*IMAGES, webhook=HOOK)
    assert "webhook https://bot.example/hook?token=*** did not answer" in str(caught.value)
    assert not holds_token(vars(caught.value))
    assert TOKEN in api.requests[0]["body"].decode()  # the request carried it, as it must


async def test_a_token_echoed_in_a_media_validation_issue_is_masked(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    issue = {"path": ["webhook"], "message": "unreachable", "received": HOOK}
    api.script({"code": 3, "message": "invalid input", "issues": [issue]})
    with pytest.raises(BadRequestError) as caught:
        await client.media.create("flux-pro", "a cat", webhook=HOOK)
    assert caught.value.issues and not holds_token(caught.value.issues)
    assert not holds_token(caught.value)


async def test_a_token_echoed_in_the_created_task_is_masked(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(task_json(status="idle", error=f"will call {HOOK}", id="t-created"))
    task = await client.faceswap.create(*IMAGES, webhook=HOOK)
    assert task.id == "t-created"
    assert task.error == "will call https://bot.example/hook?token=***"
    plain = await client.faceswap.create(*IMAGES)  # no webhook: nothing to mask
    assert plain.error == f"will call {HOOK}"


ECHOES: list[tuple[int, Any, dict[str, str]]] = [
    (429, {"error": {"message": f"slow down, {HOOK}", "type": "rate_limit"}}, {}),
    (503, f"<html>upstream refused {HOOK}</html>", {"Content-Type": "text/html"}),
]


async def test_a_token_echoed_by_a_retried_create_is_masked_in_its_retry_reports(
    client: GPTunnelClient,
    api: ScriptedAPI,
    recorded_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[RetryDetails] = []

    class Retries(Hook):
        def on_retry(self, details: RetryDetails) -> None:
            seen.append(details)

    set_hooks([LoggingHook(), Retries()])
    try:
        caplog.set_level(logging.DEBUG)
        api.script(*ECHOES, task_json(status="idle", id="t-created"))
        task = await client.faceswap.create(*IMAGES, webhook=HOOK)
        api.replies[:] = [*ECHOES, *ECHOES]  # retried until the retries run out
        with pytest.raises(ServerError) as caught:
            await client.faceswap.create(*IMAGES, webhook=HOOK)
    finally:
        set_hooks([LoggingHook()])
    assert task.id == "t-created" and len(recorded_sleeps) == 5
    assert [details.status_code for details in seen] == [429, 503, 429, 503, 429]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5 and "hook?token=***" in warnings[0]
    assert not any(TOKEN in text for text in warnings)
    assert not any(holds_token(details.error) for details in seen)
    assert not holds_token(caught.value) and not holds_token(vars(caught.value))


def locals_holding_token(error: BaseException) -> list[str]:
    """The SDK's frames in ``error``'s traceback and chain with a local that shows the token,
    as error trackers and ``traceback`` with ``capture_locals`` render them."""
    rendered = traceback.TracebackException.from_exception(error, capture_locals=True)
    found: list[str] = []
    pending: list[traceback.TracebackException | None] = [rendered]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        for frame in current.stack:
            sdk = f"{os.sep}gptunnel_async{os.sep}" in frame.filename  # not the test's own
            if sdk and any(TOKEN in value for value in (frame.locals or {}).values()):
                found.append(frame.name)
        pending += [current.__cause__, current.__context__]
    return found


WEBHOOK_CALLS: list[tuple[str, Callable[[GPTunnelClient], Awaitable[Any]], list[Any]]] = [
    (
        "faceswap.create refused",
        lambda client: client.faceswap.create(*IMAGES, webhook=HOOK),
        [(400, {"error": {"message": "bad image"}}, {})],
    ),
    (
        "create_task unpaid",
        lambda client: client.faceswap.create_task("faceswap/create", {"webhook": HOOK}),
        [(402, {"error": {"message": "no money"}}, {})],
    ),
    (
        "media.create refused",
        lambda client: client.media.create("flux-pro", "a cat", webhook=HOOK),
        [{"code": 3, "message": "invalid input"}],
    ),
    (
        "media.generate failed",
        lambda client: client.media.generate("flux-pro", "a cat", webhook=HOOK),
        [media_json("idle"), media_json("failed", message="blocked")],
    ),
]


@pytest.mark.parametrize(
    ("what", "call", "replies"), WEBHOOK_CALLS, ids=[c[0] for c in WEBHOOK_CALLS]
)
async def test_no_frame_of_a_failed_create_holds_its_webhook_token(
    client: GPTunnelClient,
    api: ScriptedAPI,
    what: str,
    call: Callable[[GPTunnelClient], Awaitable[Any]],
    replies: list[Any],
) -> None:
    api.replies[:] = replies
    with pytest.raises(GPTunnelError) as caught:
        await call(client)
    assert locals_holding_token(caught.value) == []
    assert not holds_token(caught.value)


CANCELLED_CALLS = [(what, call) for what, call, _ in WEBHOOK_CALLS]


@pytest.mark.parametrize(("what", "call"), CANCELLED_CALLS, ids=[c[0] for c in CANCELLED_CALLS])
@pytest.mark.parametrize("way", ["wait_for", "timeout", "cancel"])
async def test_no_frame_of_a_cancelled_create_holds_its_webhook_token(
    client: GPTunnelClient,
    api: ScriptedAPI,
    what: str,
    call: Callable[[GPTunnelClient], Awaitable[Any]],
    way: str,
) -> None:
    api.replies[:] = [faults.stall()]  # the create never gets its answer
    expected = asyncio.CancelledError if way == "cancel" else TimeoutError
    with pytest.raises(expected) as caught:
        await _given_up(call(client), way)
    assert locals_holding_token(caught.value) == []


async def _given_up(call: Awaitable[Any], way: str) -> None:
    """``call`` ended from outside, as a bot's timeout or shutdown ends it."""
    if way == "wait_for":
        await asyncio.wait_for(call, 0.1)
    elif way == "timeout":
        async with asyncio.timeout(0.1):
            await call
    else:
        running = asyncio.ensure_future(call)
        await asyncio.sleep(0.1)
        running.cancel()
        await running


REFUSED_WITH_TOKEN = [
    f"{HOOK}\n",
    f"https://bot.example:99999/hook?token={TOKEN}",
    f"{HOOK}&pad=" + "a" * MAX_WEBHOOK_URL_LENGTH,
    f"ftp://bot.example/hook?token={TOKEN}",
    f"https://bot.example/ho ok?token={TOKEN}",
]


@pytest.mark.parametrize("webhook", REFUSED_WITH_TOKEN)
async def test_a_refused_webhook_url_shows_its_token_masked(
    client: GPTunnelClient, api: ScriptedAPI, webhook: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        await client.faceswap.create(*IMAGES, webhook=webhook)
    assert "webhook" in str(refused.value) and TOKEN[:8] not in str(refused.value)
    chain = [refused.value.__context__, refused.value.__cause__]
    assert all(TOKEN[:8] not in str(linked) for linked in chain if linked is not None)
    assert api.requests == []  # refused before anything was sent


async def test_a_create_task_body_that_is_no_mapping_shows_a_token_masked(
    client: GPTunnelClient,
) -> None:
    with pytest.raises(ConfigurationError, match="body must be a JSON object") as refused:
        await client.faceswap.create_task("faceswap/create", [("webhook", HOOK)])  # type: ignore[arg-type]
    assert "token=***" in str(refused.value) and TOKEN[:8] not in str(refused.value)


@pytest.mark.parametrize("call", CREATES.values(), ids=CREATES.keys())
@pytest.mark.parametrize("body", ["<html>proxy</html>", "[1, 2]"])
async def test_a_create_answered_with_no_task_object_says_which_request_and_what_it_means(
    client: GPTunnelClient, api: ScriptedAPI, call: Any, body: str
) -> None:
    """It said "the answer is not JSON: Expecting value ...", naming no request, and not
    that the paid task may have started."""
    api.script((200, body, {"Content-Type": "text/html"}))
    with pytest.raises(ResponseDecodeError) as caught:
        await call(client)
    text = str(caught.value)
    assert text.startswith("POST /v1/")
    assert MAY_HAVE_STARTED in text
    assert caught.value.status_code == 200
    assert body[:5] in caught.value.body
    assert len(api.requests) == 1


async def test_a_create_retried_and_then_answered_with_no_task_object_says_so_too(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    """Refused first (a 503: surely not started), retried, then a proxy's page: the
    second create reached the server, and the warning was lost."""
    api.script(
        (503, {"error": {"message": "busy"}}, {"Retry-After": "0"}),
        (200, "<html>proxy</html>", {"Content-Type": "text/html"}),
    )
    with pytest.raises(ResponseDecodeError) as caught:
        await client.faceswap.create("https://a/1.png", "https://a/2.png")
    assert str(caught.value).startswith("POST /v1/faceswap/create: the answer is not JSON")
    assert "the task may have started" in str(caught.value)
    assert len(api.requests) == 2


STARTED_OR_NOT: list[Any] = [
    pytest.param(faults.answer(500, {"error": {"message": "boom"}}), True, id="500"),
    pytest.param(faults.answer(502, "bad gateway"), True, id="502"),
    pytest.param(faults.answer(504, "gateway timeout"), True, id="504"),
    pytest.param(faults.stall(), True, id="no answer in time"),
    pytest.param(faults.reset(), True, id="connection dropped after the request"),
    pytest.param(faults.answer(503, {"error": {"message": "busy"}}), False, id="503 refused"),
    pytest.param(faults.rate_limited("0"), False, id="429 refused"),
    pytest.param(faults.answer(400, {"error": {"message": "bad"}}), False, id="400"),
    pytest.param(faults.answer(402, {"error": {"message": "no money"}}), False, id="402"),
]


@pytest.mark.parametrize(("reply", "may_have_started"), STARTED_OR_NOT)
@pytest.mark.parametrize("refused_first", [False, True], ids=["first try", "after a 503"])
async def test_a_failed_create_says_whether_the_task_may_have_started(
    api: ScriptedAPI, reply: Any, may_have_started: bool, refused_first: bool
) -> None:
    """A create cut off after the server may have acted (a timeout, a 500) said nothing
    of it, so the caller created the paid task again; a refusal or a rejection did not
    start it, and says nothing either."""
    if refused_first:  # the retry is the create that may have started it
        api.script(faults.answer(503, {"error": {"message": "busy"}}, {"Retry-After": "0"}))
    api.script(reply)
    async with GPTunnelClient(
        api_key="sk-test", base_url=api.base_url, timeout=0.3, max_retries=1
    ) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.faceswap.create("https://a/1.png", "https://a/2.png")
    text = str(caught.value)
    assert (MAY_HAVE_STARTED in text) is may_have_started
    if may_have_started:
        assert "POST /v1/faceswap/create" in text
        assert len(api.requests) == 1 + refused_first  # and it was not sent again


@pytest.mark.parametrize("status", [*range(500, 600), 600, 999])
async def test_a_create_answered_with_any_5xx_but_a_refusal_may_have_started(
    api: ScriptedAPI, status: int
) -> None:
    """Only 500, 502 and 504 said so: a proxy's 524 ("the origin took the request and did
    not answer in time"), a 520 or a 507 raised a bare ``ServerError``, and the caller
    created the paid task again. 501, 503, 505 and 511 say the request was not taken."""
    api.script(faults.answer(status, "<html>upstream</html>"))
    async with GPTunnelClient(
        api_key="sk-test", base_url=api.base_url, timeout=5, max_retries=1
    ) as client:
        with pytest.raises(ServerError) as caught:
            await client.faceswap.create("https://a/1.png", "https://a/2.png")
    text = str(caught.value)
    assert (MAY_HAVE_STARTED in text) is (status not in (501, 503, 505, 511)), text
    if status != 503:  # a refusal is sent again; an answer after any other, never
        assert len(api.requests) == 1


async def test_a_server_text_saying_may_have_started_does_not_hide_the_warning(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(faults.answer(500, {"error": {"message": "the task may have started"}}))
    with pytest.raises(ServerError) as caught:
        await client.faceswap.create("https://a/1.png", "https://a/2.png")
    assert str(caught.value).endswith("; " + MAY_HAVE_STARTED)


class _CallbackBroke(Exception):
    """What a bot's progress callback raises (Telegram's "message is not modified")."""


async def test_an_error_after_the_paid_create_names_the_task_it_created(
    gptunnel_fake: FakeGPTunnel,
) -> None:
    def breaks(event: Any) -> None:
        raise _CallbackBroke("message is not modified")

    async with gptunnel_fake.client() as client:
        with pytest.raises(_CallbackBroke) as caught:
            await client.faceswap.swap("https://a/1.png", "https://a/2.png", on_progress=breaks)
        named, note = caught.value.__notes__  # the wait's, then the paid create's
        task_id = note.split()[1]
        assert named == f"raised by the wait for faceswap task {task_id!r}"
        [created] = [r for r in gptunnel_fake.requests if r.path == "/v1/faceswap/create"]
        assert created.json["sourceImage"] == "https://a/1.png"  # one paid task, named:
        assert f"client.faceswap.wait_for_result({task_id!r})" in note
        assert (await client.faceswap.wait_for_result(task_id)).is_done  # not lost

        gptunnel_fake.fail_next(401, path="midjourney/result")
        with pytest.raises(GPTunnelError) as refused:
            await client.midjourney.imagine_and_wait("a fox")
        assert "client.midjourney.wait_for_result(" in refused.value.__notes__[-1]

        gptunnel_fake.script_created(duration=60)
        with pytest.raises(GPTunnelError) as timed_out:  # its text names the task already
            await client.faceswap.swap("https://a/1.png", "https://a/2.png", timeout=0.05)
        assert not getattr(timed_out.value, "__notes__", [])


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the server has no event to offer
        await asyncio.sleep(0.01)


async def test_a_create_cut_off_by_close_says_the_task_may_have_started(
    api: ScriptedAPI,
) -> None:
    """The server has the create and has not answered when the bot's shutdown closes the
    client: the task may be running and paid for. The error said only "closed"."""
    api.script(faults.stall())
    client = GPTunnelClient(api_key="sk-test", base_url=api.base_url, timeout=30)
    creating = asyncio.create_task(client.faceswap.create("https://a/1.png", "https://a/2.png"))
    await _until(lambda: len(api.requests) == 1)
    await client.close()
    with pytest.raises(UsageError) as caught:
        await creating
    text = str(caught.value)
    assert text.startswith("POST /v1/faceswap/create: this GPTunnelClient is closed")
    assert text.endswith(MAY_HAVE_STARTED)


async def test_a_create_closed_before_it_was_sent_says_nothing_of_a_task(
    api: ScriptedAPI,
) -> None:
    """Queued behind the one connection (a read the server holds), or on a client already
    closed: nothing reached the server, so no task can have started."""
    api.script(faults.stall())
    client = GPTunnelClient(api_key="sk-test", base_url=api.base_url, timeout=30, max_connections=1)
    reading = asyncio.create_task(client.faceswap.result("task-1"))
    await _until(lambda: len(api.requests) == 1)
    creating = asyncio.create_task(client.faceswap.create("https://a/1.png", "https://a/2.png"))
    await asyncio.sleep(0.05)  # queued for the connection slot
    await client.close()
    for cut in (reading, creating):
        with pytest.raises(UsageError) as caught:
            await cut
        assert "may have started" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        await client.faceswap.create("https://a/1.png", "https://a/2.png")
    assert "may have started" not in str(caught.value)
    assert [r["path"] for r in api.requests] == ["/v1/faceswap/result"]


async def test_a_create_that_may_have_started_says_where_to_look_for_the_task(
    gptunnel_fake: FakeGPTunnel,
) -> None:
    """It said "look for it before you create it again", but no API call lists tasks:
    the reader was left to guess where to look."""
    gptunnel_fake.fail_next(500, path="faceswap/create")
    async with gptunnel_fake.client() as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.faceswap.create("https://a/1.png", "https://a/2.png")
        text = str(caught.value)
        for place in ("a webhook you passed", "the balance", "your GPTunnel account"):
            assert place in text
        assert (await client.balance()).balance == 100.0  # the balance is one call away


@pytest.mark.parametrize("swaps", [1, 2, 7])
async def test_one_exception_object_ending_many_waits_keeps_one_note_of_each_kind(
    gptunnel_fake: FakeGPTunnel, swaps: int
) -> None:
    """A failed future every progress callback awaits raises the one exception object in
    each wait: it got a note per wait (and per create), each naming another task, a
    traceback listing them all and the object growing for as long as the app ran. It
    keeps one note of each kind: the task's own, or, raised by several, a shared one."""
    broke: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    broke.set_exception(_CallbackBroke("the chat is gone"))

    async def waits_for_the_chat(event: Any) -> None:
        await broke

    async with gptunnel_fake.client() as client:
        outcomes = await asyncio.gather(
            *(
                client.faceswap.swap(
                    f"https://a/{n}.png", "https://a/f.png", on_progress=waits_for_the_chat
                )
                for n in range(swaps)
            ),
            return_exceptions=True,
        )
    error = outcomes[0]
    assert all(outcome is error for outcome in outcomes)  # one object, raised in each
    assert isinstance(error, _CallbackBroke)
    named, created = error.__notes__
    if swaps == 1:
        assert named.startswith("raised by the wait for faceswap task ")
        assert created.split()[1] in named
    else:
        assert named.startswith("raised by the waits for more than one task")
        assert created.startswith("more than one task was created (and is paid for)")
    with pytest.raises(_CallbackBroke):
        broke.result()


async def test_notes_set_by_hand_are_left_alone_and_the_error_raised_as_it_is(
    gptunnel_fake: FakeGPTunnel,
) -> None:
    """An exception whose ``__notes__`` is not a list (set by hand): adding a note raised
    TypeError, which took the place of the error that ended the wait."""
    odd = _CallbackBroke("odd")
    odd.__notes__ = ("kept",)  # type: ignore[assignment]

    def breaks(event: Any) -> None:
        raise odd

    async with gptunnel_fake.client() as client:
        with pytest.raises(_CallbackBroke) as caught:
            await client.faceswap.swap("https://a/1.png", "https://a/2.png", on_progress=breaks)
    assert caught.value is odd and odd.__notes__ == ("kept",)
