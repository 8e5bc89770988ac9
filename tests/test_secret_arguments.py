"""The calls given the API key or a webhook secret raise their errors from frames that do
not hold them: a client's and a receiver's constructor, ``parse_webhook`` and
``WebhookReceiver.receive``, rendered as error trackers render a traceback (every
chained exception, every frame, every local's ``repr``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import string
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

import gptunnel_async
from gptunnel_async import (
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    PollPolicy,
    Task,
    TaskFailedError,
    WebhookVerificationError,
)
from gptunnel_async._safe_errors import secret_arguments
from gptunnel_async.errors import StoreUnavailableError
from gptunnel_async.fleet import MemoryStore, RedisStore, Watcher
from gptunnel_async.testing import FakeGPTunnel
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

keys = st.text(string.ascii_letters + string.digits, min_size=20, max_size=40).map(
    lambda tail: f"sk-{tail}"
)
"""Keys distinctive enough that no other text of a rendering holds one by chance."""

secrets = st.text(string.ascii_letters + string.digits + "-_", min_size=24, max_size=40).map(
    lambda tail: f"whs-{tail}"
)

BAD_CLIENT_OPTIONS: list[dict[str, Any]] = [
    {"timeout": -1},
    {"timeout": float("nan")},
    {"timeout": "30"},
    {"base_url": "ftp://x"},
    {"base_url": "https://u:p@h/v1"},
    {"max_retries": "x"},
    {"max_retries": -1},
    {"max_connections": 0},
    {"session": 1},
    {"poll_policy": 1},
    {"requests_per_second": -1},
    {"requests_per_second": 1, "budget": object()},
    {"budget": "redis"},
    {"allow_private_result_urls": "yes"},
]

BAD_KEYS: list[Callable[[str], str]] = [
    lambda key: key + "\n",
    lambda key: " " + key,
    lambda key: key + "é",
    lambda key: key + "\x07",
    lambda key: "Bearer " + key,
    lambda key: f'"{key}"',
]
"""Keys refused for their characters or their wrapping, each holding the whole key."""


SDK = str(Path(gptunnel_async.__file__).parent)


def rendered(exc: BaseException) -> str:
    """``exc`` as error trackers show it, from the first frame of the SDK down (if any
    is left): the frames above it are the test's, which hold the key it passed."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(SDK):
        tb = tb.tb_next
    exc.__traceback__ = tb
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def raised(call: Callable[[], object]) -> GPTunnelError:
    """The SDK error ``call`` raises, caught in a frame that holds nothing secret."""
    try:
        call()
    except GPTunnelError as exc:
        return exc
    raise AssertionError("no error was raised")


@pytest.fixture
def no_environment_key(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)
    return monkeypatch


# -- the client's constructor -----------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys, st.sampled_from(BAD_CLIENT_OPTIONS), st.booleans())
def test_a_refused_client_option_leaves_the_key_in_no_frame(
    no_environment_key: pytest.MonkeyPatch, key: str, options: dict[str, Any], from_env: bool
) -> None:
    if from_env:
        no_environment_key.setenv("GPTUNNEL_API_KEY", key)
        error = raised(lambda: GPTunnelClient(**options))
    else:
        error = raised(lambda: GPTunnelClient(key, **options))
    assert isinstance(error, ConfigurationError)
    assert key not in rendered(error)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys, st.sampled_from(BAD_KEYS), st.booleans())
def test_a_refused_key_is_in_no_frame_either(
    no_environment_key: pytest.MonkeyPatch, key: str, spoil: Callable[[str], str], from_env: bool
) -> None:
    if from_env:
        no_environment_key.setenv("GPTUNNEL_API_KEY", spoil(key))
        error = raised(lambda: GPTunnelClient())
    else:
        error = raised(lambda: GPTunnelClient(spoil(key)))
    assert isinstance(error, ConfigurationError)
    assert key not in rendered(error)


def test_the_error_still_says_what_was_wrong_and_where_it_was_called(
    no_environment_key: pytest.MonkeyPatch,
) -> None:
    error = raised(lambda: GPTunnelClient("sk-abcdefghijklmnopqrstu", timeout=-1))
    assert "timeout must be a finite number of seconds > 0, at most a day" in str(error)
    text = "".join(traceback.format_exception(error))
    assert "in <lambda>" in text  # the caller's line stays
    assert "raise ConfigurationError" not in text  # the frames that held the key are gone


def test_a_half_built_client_has_a_repr() -> None:
    half_built = GPTunnelClient.__new__(GPTunnelClient)
    assert repr(half_built) == "GPTunnelClient(base_url=None)"


async def test_a_built_client_shows_its_base_url_only() -> None:
    async with GPTunnelClient("sk-abcdefghijklmnopqrstu", base_url="http://127.0.0.1:9/v1") as c:
        assert repr(c) == "GPTunnelClient(base_url='http://127.0.0.1:9/v1')"


# -- webhooks -----------------------------------------------------------------------------

bodies = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    st.sampled_from(
        [
            b"",
            b"[]",
            b"not json",
            b"{}",
            b'{"id": 1, "status": "done"}',
            b'{"code": 3, "message": "bad input"}',
            b'{"code": 1001, "message": "blocked"}',
            b'{"code": 2, "error": {"message": "no"}}',
        ]
    ),
)


def failing_webhook_calls(
    key: str, secret: str, body: bytes | str, token: str | None
) -> list[Callable[[], object]]:
    receiver = WebhookReceiver("https://bot.example/hook", secret=secret, api_key=key)
    return [
        lambda: receiver.receive(body, token),
        lambda: parse_webhook(body, token, secret=secret, api_key=key),
    ]


@given(keys, secrets, bodies, st.sampled_from(["right", "wrong", "none", "prefix"]))
def test_no_webhook_error_leaves_the_key_or_the_secret_in_a_frame(
    key: str, secret: str, body: bytes | str, which: str
) -> None:
    token = {"right": secret, "wrong": "x" * 30, "none": None, "prefix": secret[:-1]}[which]
    for call in failing_webhook_calls(key, secret, body, token):
        try:
            call()
        except GPTunnelError as exc:
            assert which == "right" or isinstance(exc, WebhookVerificationError)  # noqa: PT017
            text = rendered(exc)
            assert key not in text
            assert secret not in text
        else:
            assert which == "right"


@given(keys, secrets)
def test_a_body_echoing_the_key_fails_without_it(key: str, secret: str) -> None:
    echo = json.dumps({"code": 3, "message": f"bad token {key}", "id": key}).encode()
    for call in failing_webhook_calls(key, secret, echo, secret):
        error = raised(call)
        assert key not in rendered(error)
        assert key not in str(error)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys, secrets, st.sampled_from(["ftp://x/h", "https://x/h?a=1", "http://[::1", 42]))
def test_a_refused_receiver_leaves_its_key_and_secret_in_no_frame(
    no_environment_key: pytest.MonkeyPatch, key: str, secret: str, url: Any
) -> None:
    error = raised(lambda: WebhookReceiver(url, secret=secret, api_key=key))
    assert isinstance(error, ConfigurationError)
    text = rendered(error)
    assert key not in text
    assert secret not in text
    no_environment_key.setenv("GPTUNNEL_API_KEY", key)
    assert key not in rendered(raised(lambda: WebhookReceiver(url)))
    assert key not in rendered(raised(lambda: WebhookReceiver("https://x/h", secret="short")))


async def test_a_webhook_wait_that_fails_leaves_the_key_in_no_frame() -> None:
    key = "sk-abcdefghijklmnopqrstuvwxyz0123"
    receiver = WebhookReceiver("https://bot.example/hook", api_key=key)
    echo = {"id": "t", "object": "task", "status": "failed", "error": f"refused {key}"}
    receiver.receive(json.dumps(echo), receiver.secret)  # kept for the wait below
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(TaskFailedError) as caught:
            await receiver.wait_for_result(client.faceswap, "t")
    assert key not in rendered(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"id": "t"}', b'{"code": 2, "message": "x"}']
)
async def test_a_delivery_a_family_cannot_read_leaves_the_key_in_no_frame(body: bytes) -> None:
    key = "sk-abcdefghijklmnopqrstuvwxyz0123"
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1") as client:
        for family in (client.faceswap, client.media):
            with pytest.raises(GPTunnelError) as caught:
                family._parse_delivery(body)  # what a wait does with its delivery
            assert key not in rendered(caught.value)


# -- careless arguments of the webhook API -----------------------------------------------


@pytest.mark.parametrize(
    "family",
    [
        "faceswap",
        42,
        PollPolicy(),
        GPTunnelClient("sk-abcdefghijklmnopqrstu", base_url="http://h/"),
    ],
)
def test_parse_webhook_names_a_family_or_is_refused(family: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"family must be a client's task family"):
        parse_webhook(b'{"id": "t", "status": "done"}', "s" * 20, secret="s" * 20, family=family)


async def test_parse_webhook_reads_as_the_family_given() -> None:
    async with GPTunnelClient("sk-abcdefghijklmnopqrstu", base_url="http://127.0.0.1:9") as c:
        body = b'{"id": "t", "status": "done", "result": ["https://cdn.example/a.mp3"]}'
        task = parse_webhook(body, "s" * 20, secret="s" * 20, family=c.media)
    assert type(task).__name__ == "MediaTask"


@pytest.mark.parametrize(
    "arguments",
    [
        {"secret": None},
        {"secret": ""},
        {"secret": 42},
        {"api_key": 42},
        {"api_key": ""},
        {"body": 12},
        {"body": None},
    ],
)
def test_careless_parse_webhook_arguments_are_configuration_errors(
    arguments: dict[str, Any],
) -> None:
    call: dict[str, Any] = {"body": b"{}", "secret": "s" * 20, **arguments}
    with pytest.raises(ConfigurationError):
        parse_webhook(call.pop("body"), "s" * 20, **call)


# -- the wrapper itself -------------------------------------------------------------------


def test_the_callers_own_exception_is_left_as_it_is() -> None:
    @secret_arguments
    def refuse(secret: str) -> None:
        raise ConfigurationError("refused")

    try:
        raise KeyError("the caller's")
    except KeyError as outer:
        caller_s = outer
        with pytest.raises(ConfigurationError) as caught:
            refuse("hunter2-hunter2-hunter2")
    assert caught.value.__context__ is caller_s
    assert caller_s.__traceback__ is not None  # not the SDK's to take
    assert "refuse" not in [frame.name for frame in traceback.extract_tb(caught.tb)]


def test_the_chain_stays_and_loses_its_frames() -> None:
    @secret_arguments
    def refuse(secret: str) -> None:
        try:
            int(secret)
        except ValueError as exc:
            raise ConfigurationError("not a number") from exc

    with pytest.raises(ConfigurationError) as caught:
        refuse("hunter2-hunter2-hunter2")
    cause = caught.value.__cause__
    assert isinstance(cause, ValueError)
    assert cause.__traceback__ is None
    assert "secret = " not in rendered(caught.value)


def test_a_result_passes_through_unchanged() -> None:
    @secret_arguments
    def add(a: int, *, b: int) -> int:
        return a + b

    assert add(1, b=2) == 3
    assert add.__name__ == "add"


def test_an_unexpected_error_leaves_without_the_secret_too() -> None:
    @secret_arguments
    def broken(secret: str) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError) as caught:
        broken("hunter2-hunter2-hunter2")
    assert "hunter2-hunter2-hunter2" not in rendered(caught.value)


async def test_a_coroutine_function_is_guarded_when_awaited() -> None:
    @secret_arguments
    async def refuse(secret: str) -> int:
        await asyncio.sleep(0)
        try:
            int(secret)
        except ValueError as exc:
            raise ConfigurationError("not a number") from exc
        return 1

    assert inspect.iscoroutinefunction(refuse) and refuse.__name__ == "refuse"
    try:
        raise KeyError("the caller's")
    except KeyError as outer:
        caller_s = outer
        with pytest.raises(ConfigurationError) as caught:
            await refuse("hunter2-hunter2-hunter2")
    assert caller_s.__traceback__ is not None  # not the SDK's to take
    cause = caught.value.__cause__
    assert isinstance(cause, ValueError) and cause.__traceback__ is None
    shown = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    assert [frame.name for frame in shown.stack if "secret" in (frame.locals or {})] == []
    assert "refuse" not in [frame.name for frame in shown.stack]
    assert await refuse("12") == 1


# -- a refused task id, and the fleet's calls -------------------------------------------

BAD_TASK_IDS = ["", " abc", "abc\n", "a" * 300, "\ud800", 42]
"""Task ids every call that takes one refuses, none of them holding the key."""


def _task_id_calls(client: GPTunnelClient, watcher: Watcher) -> list[Callable[[Any], Any]]:
    """Each call that checks a task id the caller gave it, as ``call(task_id)``."""
    return [
        client.faceswap.result,
        client.media.result,
        lambda task_id: client.wait_for_result(task_id),
        watcher.watch,
        watcher.result,
    ]


@settings(max_examples=30, deadline=None)
@given(keys, st.sampled_from(BAD_TASK_IDS), st.integers(0, 4))
async def test_a_refused_task_id_leaves_the_key_in_no_frame(
    key: str, task_id: Any, which: int
) -> None:
    """The check of a task id was given the key, to refuse an id that holds it: its frame
    held the key as ``secret`` (and ``key``) when it refused a merely malformed id."""
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1") as client:
        call = _task_id_calls(client, Watcher(client, MemoryStore()))[which]
        with pytest.raises(ConfigurationError, match="task_id") as caught:
            await call(task_id)
    assert key not in rendered(caught.value)


async def test_a_resolve_of_a_task_with_a_refused_id_leaves_the_key_in_no_frame() -> None:
    key = "sk-abcdefghijklmnopqrstuvwxyz0123"
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1") as client:
        watcher = Watcher(client, MemoryStore())
        with pytest.raises(ConfigurationError, match="task_id") as caught:
            await watcher.resolve(Task(id=" t", status="done", percent=100))
    assert key not in rendered(caught.value)


async def test_a_lost_listener_ends_progress_with_the_key_in_no_frame(
    redis: Redis, redis_url: str
) -> None:
    """A Redis restart ends ``progress()`` with ``StoreUnavailableError``, as documented:
    the generator that decoded the notices held the key (to mask them) as a local."""
    key = "sk-abcdefghijklmnopqrstuvwxyz0123"
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1") as client:
        watcher = Watcher(client, RedisStore(redis, name="frames"))

        async def listen() -> None:
            async for _ in watcher.progress():
                pass

        listening = asyncio.create_task(listen())
        for _ in range(100):  # until the listener has subscribed
            if (await redis.pubsub_numsub("gptunnel:{frames}:events"))[0][1]:
                break
            await asyncio.sleep(0.02)
        await redis.client_kill_filter(_type="pubsub")  # what a restart does to it
        with pytest.raises(StoreUnavailableError) as caught:
            await asyncio.wait_for(listening, 5)
    assert key not in rendered(caught.value)


# -- create calls -------------------------------------------------------------------------


def _create_calls(client: GPTunnelClient, key: str) -> list[Callable[[], Any]]:
    """Create calls given the key, by mistake, where an argument goes: each is refused
    before any request, with a text that quotes the argument."""
    return [
        lambda: client.faceswap.create(key, "https://example.com/face.png"),
        lambda: client.faceswap.create("https://example.com/me.png", f"./{key}.png"),
        lambda: client.faceswap.swap(key, "https://example.com/face.png"),
        lambda: client.faceswap.create(
            "https://example.com/me.png", "https://example.com/face.png", webhook=key
        ),
        lambda: client.media.create("flux-pro", "a fox", images=[key]),
        lambda: client.media.generate("flux-pro", "a fox", images=[f"{key}.png"]),
        lambda: client.media.create("flux-pro", "a fox", webhook=f"ftp://{key}"),
        lambda: client.bgremover.create_task(f"bgremover/{key}.json", {"image": "x"}),
        lambda: client.bgremover.create_task("bgremover/create", {"webhook": key}),
        lambda: client.midjourney.create_task(f"midjourney/{key}?x", {"taskId": "t"}),
        lambda: client.midjourney.inpaint("t1", f"./{key}.png"),
        lambda: client.midjourney.imagine_and_wait(key, timeout=-1),
        lambda: client.media.generate(f"{key}", "a fox", images=[key], timeout=-1),
    ]


@pytest.mark.parametrize("which", range(13))
@settings(max_examples=5, deadline=None)
@given(key=keys)
async def test_a_create_call_given_the_key_by_mistake_never_shows_it(key: str, which: int) -> None:
    """An argument that holds the key was quoted in the refusal's text as it was
    (``cannot read the source_image file 'sk-...'``), while ``download_result`` and the
    task-id checks masked it."""
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(ConfigurationError) as caught:
            await _create_calls(client, key)[which]()
    shown = rendered(caught.value)
    assert key not in shown
    assert key[:12] not in str(caught.value)  # no run of it either


async def _late_callback_error(client: GPTunnelClient, which: int) -> RuntimeError:
    """The error of an ``on_progress`` that raises, through a create-and-wait call."""

    def show(event: object) -> None:
        raise RuntimeError("the callback's own bug")

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.faceswap.swap(
            "https://example.com/me.png", "https://example.com/face.png", on_progress=show
        ),
        lambda: client.midjourney.imagine_and_wait("a fox", on_progress=show),
        lambda: client.media.generate("flux-pro", "a fox", on_progress=show),
    ]
    with pytest.raises(RuntimeError) as caught:
        await calls[which]()
    return caught.value


@pytest.mark.parametrize("which", range(3))
async def test_a_callbacks_own_error_keeps_the_callbacks_frame(
    gptunnel_fake: FakeGPTunnel, which: int
) -> None:
    """Guarding the create's arguments must not cost the caller the frames of their own
    callback: its error "reaches you unchanged", traceback included."""
    async with gptunnel_fake.client() as client:
        error = await _late_callback_error(client, which)
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert frames[-1] == "show", frames


def refused_create_calls(client: GPTunnelClient, key: str) -> list[Callable[[], Any]]:
    """Create calls refused before sending, each for an argument that quotes the key."""
    face = "https://cdn.example/face.png"
    return [
        lambda: client.faceswap.create(f"https://exa mple.com/me.png?k={key}", face),
        lambda: client.faceswap.create(f"data:image/png,{key}", face),
        lambda: client.faceswap.create(f"/no/such/{key}.png", face),
        lambda: client.faceswap.create(face, face, webhook=f"ftp://x/{key}"),
        lambda: client.media.create("suno", "a song", images=[key]),
        lambda: client.media.create("suno", "a song", images=[f"https://exa mple.com/{key}"]),
        lambda: client.media.create("suno", "a song", webhook=f"ftp://x/{key}"),
        lambda: client.media.generate("suno", "a song", images=[f"data:,{key}"]),
        lambda: client.midjourney.create_task(f"midjourney/../{key}", {}),
        lambda: client.midjourney.create_task("midjourney/pan", {"x": {key}}),
        lambda: client.midjourney.inpaint("grid-1", f"/no/such/{key}.png"),
        lambda: client.midjourney.variation("grid-1", mode=key),
        lambda: client.faceswap.swap(f"https://exa mple.com/{key}", face),
    ]


@given(keys)
async def test_a_create_refusing_an_argument_that_quotes_the_key_shows_it_nowhere(
    key: str,
) -> None:
    """A link, a data: URI, a path, a mode or a body that held the key (a URL with
    ``?key=...``) was quoted whole in the ConfigurationError, and held by its frames."""
    async with GPTunnelClient(key, base_url="http://127.0.0.1:9/v1", max_retries=0) as client:
        for call in refused_create_calls(client, key):
            with pytest.raises(ConfigurationError) as caught:
                await call()
            assert key not in str(caught.value)
            assert key not in repr(caught.value.args)
            assert key not in rendered(caught.value)
