"""Every option, whatever is passed, is either accepted or refused with ConfigurationError:
no OverflowError, TypeError or AttributeError escapes, and the error text stays short."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import (
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    PollPolicy,
    Task,
    WebhookVerificationError,
    throttle,
)
from gptunnel_async._checks import (
    MAX_TASK_ID_LENGTH,
    check_task_id,
    count,
    describe,
    function,
    http_url,
    number,
    plain_function,
)
from gptunnel_async.errors import DownloadError
from gptunnel_async.testing import FakeGPTunnel
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

T = TypeVar("T")

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**500),
    st.integers(max_value=-(10**300)),
    st.floats(),  # NaN and both infinities included
    st.text(max_size=30),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
    st.just(math.nan),
    st.sampled_from(["10", "1e400", "nan", "http://[::1", "ftp://x", "http://h:99999/"]),
)


def built_or_refused(cls: Callable[..., T], options: dict[str, Any]) -> T | None:
    """``cls(**options)``, or ``None`` if it was refused with a short ConfigurationError."""
    try:
        return cls(**options)
    except ConfigurationError as exc:
        assert len(str(exc)) < 300  # noqa: PT017 (the point: refused, and briefly)
        return None


CLIENT_OPTIONS = (
    "timeout",
    "max_retries",
    "max_connections",
    "requests_per_second",
    "base_url",
    "api_key",
    "session",
    "poll_policy",
)


@given(st.sampled_from(CLIENT_OPTIONS), anything)
def test_any_client_option_is_valid_or_a_configuration_error(name: str, value: Any) -> None:
    options: dict[str, Any] = {"api_key": "k-123", name: value}
    client = built_or_refused(GPTunnelClient, options)
    if client is None:
        return
    transport = client._transport
    assert math.isfinite(transport.timeout) and transport.timeout > 0
    assert isinstance(transport.max_retries, int) and transport.max_retries >= 0
    assert transport.base_url.startswith(("http://", "https://"))


POLICY_FIELDS = ("initial", "multiplier", "max_interval", "jitter", "timeout", "strategy")


@given(st.sampled_from(POLICY_FIELDS), anything)
def test_any_poll_policy_field_is_valid_or_a_configuration_error(name: str, value: Any) -> None:
    policy = built_or_refused(PollPolicy, {name: value})
    if policy is None:
        return
    assert math.isfinite(policy.initial) and policy.initial > 0
    assert policy.timeout is None or math.isfinite(policy.timeout)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", 10**400),
        ("timeout", -(10**400)),
        ("timeout", True),
        ("timeout", "30"),
        ("timeout", math.inf),
        ("requests_per_second", 10**400),
        ("max_retries", 3.0),
        ("max_connections", 0),
        ("base_url", "http://[::1"),
        ("base_url", 12),
        ("api_key", 12),
        ("session", "a session"),
        ("poll_policy", {"initial": 1}),
    ],
)
def test_each_bad_client_option_is_named_in_its_error(name: str, value: Any) -> None:
    options: dict[str, Any] = {"api_key": "k-123", name: value}
    with pytest.raises(ConfigurationError, match=name):
        GPTunnelClient(**options)


@pytest.mark.parametrize("value", [10**400, math.nan, -1, 0, "1", True, None])
def test_a_positive_number_check_refuses(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        number("x", value, "a number > 0", lambda v: v > 0)


def test_checks_return_plain_values() -> None:
    assert number("x", 10**20) == 1e20
    assert count("n", 10**400, 0) == 10**400
    assert str(http_url("u", "https://example.org/a?b=1")) == "https://example.org/a?b=1"


@pytest.mark.parametrize(
    "url", ["http://[::1", "ftp://example.org/", "http:///path", "example.org", "http://h:99999/"]
)
def test_a_url_check_raises_the_error_it_is_given(url: str) -> None:
    with pytest.raises(ConfigurationError):
        http_url("base_url", url)
    with pytest.raises(DownloadError):
        http_url("the result URL", url, error=DownloadError)


@pytest.mark.parametrize(
    "host", ["a..b", ".a", "a" * 64 + ".com", "x." + "é" * 60 + ".org", "a.b..", "..."]
)
def test_a_host_name_the_resolver_would_refuse_is_refused_up_front(host: str) -> None:
    with pytest.raises(DownloadError):
        http_url("the result URL", f"https://{host}/r.png", error=DownloadError)
    with pytest.raises(ConfigurationError, match="base_url"):
        GPTunnelClient(api_key="k", base_url=f"https://{host}/v1")


@pytest.mark.parametrize(
    "host", ["a.b.", "a" * 63 + ".com", "127.0.0.1", "[::1]", "bücher.de", "localhost"]
)
def test_a_host_name_the_resolver_takes_passes(host: str) -> None:
    assert http_url("base_url", f"http://{host}:8080/v1").port == 8080


LABELS = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N"]), max_size=70)


@given(st.lists(LABELS, min_size=1, max_size=5).map(".".join))
def test_every_host_name_either_resolves_as_idna_or_is_a_typed_error(host: str) -> None:
    try:
        url = http_url("the result URL", f"https://{host}/r.png", error=DownloadError)
    except DownloadError:
        return
    (url.raw_host or "").encode("idna")  # what the resolver does: must not raise


def test_task_ids_up_to_the_limit_pass_and_longer_ones_are_refused() -> None:
    assert check_task_id("a" * MAX_TASK_ID_LENGTH)
    with pytest.raises(ConfigurationError, match="256") as caught:
        check_task_id("a" * 10_000_000)
    assert len(str(caught.value)) < 300
    for blank in ("", "  ", "\n"):
        with pytest.raises(ValueError, match="non-empty"):
            check_task_id(blank)


@pytest.mark.parametrize(
    "pasted", ["abc\ndef", "65f0c1\r", "\x00task", "a\u200bb", "tab\tinside", "\x1b[2Jid"]
)
def test_a_task_id_with_an_unprintable_character_is_refused(pasted: str) -> None:
    with pytest.raises(ConfigurationError, match="unprintable character"):
        check_task_id(pasted)


@pytest.mark.parametrize("pasted", [" 65f0c1a2b3c4", "65f0c1a2b3c4 ", "  65f0c1  "])
def test_a_task_id_with_a_space_around_it_is_refused(pasted: str) -> None:
    with pytest.raises(ConfigurationError, match="a space around it"):
        check_task_id(pasted)


@given(st.text(min_size=1, max_size=40))
def test_a_task_id_is_taken_exactly_when_it_is_printable_unicode_of_a_usable_length(
    candidate: str,
) -> None:
    usable = bool(candidate.strip()) and candidate.isprintable() and candidate == candidate.strip()
    if usable:
        assert check_task_id(candidate) == candidate
    else:
        with pytest.raises(ConfigurationError):
            check_task_id(candidate)


async def test_a_long_task_id_is_refused_before_any_request() -> None:
    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ConfigurationError):
            await client.get_result("x" * 257)
        with pytest.raises(ConfigurationError):
            client.wait_for_result("x" * 257)


async def _async_generator_callback(event: Any) -> Any:
    yield event  # a stray yield: calling it returns an async generator, and runs nothing


def _generator_callback(event: Any) -> Any:
    yield event


class _GeneratorCall:
    def __repr__(self) -> str:
        return type(self).__name__

    def __call__(self, event: Any) -> Any:
        yield event


class _AsyncGeneratorCall:
    def __repr__(self) -> str:
        return type(self).__name__

    async def __call__(self, event: Any) -> Any:
        yield event


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("policy", 5),
        ("on_progress", "print"),
        ("on_progress", _async_generator_callback),  # its body silently never ran
        ("on_progress", _generator_callback),
        ("on_progress", _GeneratorCall()),  # an object whose __call__ yields
        ("on_progress", _AsyncGeneratorCall()),
    ],
    ids=lambda value: getattr(value, "__name__", repr(value)),
)
async def test_wait_options_are_checked_when_the_wait_is_made(name: str, value: Any) -> None:
    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ConfigurationError, match=name):
            client.wait_for_result("t", **{name: value})


SECRET = "s" * 32


@given(st.one_of(st.none(), st.integers(), st.binary(), st.text(), st.just("\ud800" + SECRET)))
def test_a_webhook_token_of_any_kind_is_verified_or_refused(token: Any) -> None:
    with pytest.raises(WebhookVerificationError):
        parse_webhook(b'{"id": "t", "status": "done"}', token, secret=SECRET)


def test_a_webhook_with_the_right_token_parses_from_bytes_or_text() -> None:
    for body in (b'{"id": "t", "status": "done"}', '{"id": "t", "status": "done"}'):
        assert parse_webhook(body, SECRET, secret=SECRET).is_done
    with pytest.raises(ConfigurationError):
        parse_webhook(12, SECRET, secret=SECRET)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["http://[::1", "ftp://x/", "https://x/?a=1", 42])
def test_a_webhook_receiver_refuses_a_public_url_that_is_not_one(url: Any) -> None:
    with pytest.raises(ConfigurationError):
        WebhookReceiver(url)


@given(st.sampled_from(["max_bytes", "timeout", "dest", "clip"]), anything)
async def test_any_download_option_is_valid_or_a_configuration_error(name: str, value: Any) -> None:
    options: dict[str, Any] = {"dest": "/nonexistent-folder/x.png", name: value}
    async with GPTunnelClient(
        api_key="k-123", base_url="http://127.0.0.1:9", max_retries=0
    ) as client:
        with pytest.raises(GPTunnelError) as caught:  # nothing listens on port 9
            await client.download_result("http://127.0.0.1:9/r.png", **options)
    assert isinstance(caught.value, ConfigurationError) or name == "dest"
    assert len(str(caught.value)) < 300


@given(anything)
async def test_any_wait_timeout_is_valid_or_a_configuration_error(value: Any) -> None:
    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9") as client:
        try:
            waiter = client.wait_for_result("t", timeout=value)
        except ConfigurationError as exc:
            assert len(str(exc)) < 300  # noqa: PT017 (refused, and briefly)
        else:
            assert waiter.timeout is None or math.isfinite(waiter.timeout)
            waiter.close()


@given(st.sampled_from(["public_url", "secret"]), anything)
def test_any_webhook_receiver_option_is_valid_or_a_configuration_error(
    name: str, value: Any
) -> None:
    options: dict[str, Any] = {"public_url": "https://bot.example/hook", name: value}
    receiver = built_or_refused(WebhookReceiver, options)
    if receiver is not None:
        assert receiver.url.startswith(("http://", "https://"))
        assert len(receiver.secret) >= 16


@given(st.text(min_size=16, max_size=40))
def test_a_webhook_secret_is_refused_or_carried_whole_in_the_callback_url(secret: str) -> None:
    receiver = built_or_refused(
        WebhookReceiver, {"public_url": "https://bot.example/hook", "secret": secret}
    )
    if receiver is not None:  # a delivery to its own URL is accepted
        token = URL(receiver.url).query["token"]
        assert token == secret
        assert receiver.receive(b'{"id": "t", "status": "done"}', token).is_done


@pytest.mark.parametrize("tasks", ["faceswap", None, 42, object()])
async def test_a_webhook_wait_names_a_family_or_is_refused(tasks: Any) -> None:
    receiver = WebhookReceiver("https://bot.example/hook")
    with pytest.raises(ConfigurationError, match=r"tasks must be a client.s task family"):
        await receiver.wait_for_result(tasks, "t")


json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.dictionaries(  # keys Python's json writes as text, which JSON has no other way
            st.text(max_size=3) | st.integers(0, 3) | st.booleans() | st.none() | st.floats(),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


def deeply_nested(depth: int = 100_000) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(depth):
        body = {"a": body}
    return body


@given(json_bodies)
async def test_a_create_body_is_sent_only_if_it_is_json(value: Any) -> None:
    def is_json(item: Any) -> bool:
        if isinstance(item, float):
            return math.isfinite(item)
        if isinstance(item, list):
            return all(map(is_json, item))
        if isinstance(item, dict):
            return all(isinstance(key, str) for key in item) and all(map(is_json, item.values()))
        return True

    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9", max_retries=0) as c:
        with pytest.raises(GPTunnelError) as caught:  # nothing listens on port 9
            await c.faceswap.create_task("faceswap/create", {"value": value})
    assert isinstance(caught.value, ConfigurationError) != is_json(value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"lyrics": {1: "verse", "1": "chorus"}}, "1"),
        ({"tags": [{None: "x"}]}, "null"),
        ({"flags": {True: 1, "true": 2}}, "true"),
        ({"weights": {0.5: "a"}}, "0.5"),
    ],
)
async def test_an_object_key_that_is_not_a_string_is_refused_before_sending(
    fake: FakeGPTunnel, options: dict[str, Any], key: str
) -> None:
    """JSON writes such a key as text: ``{1: "verse", "1": "chorus"}`` went out with the
    key "1" twice, and the server kept one of the two, silently."""
    async with fake.client() as client:
        with pytest.raises(ConfigurationError, match=f"into the text '{key}'"):
            await client.media.create("suno", "a song", **options)
        with pytest.raises(ConfigurationError, match="an object key must be a string"):
            await client.midjourney.create_task("midjourney/reroll", {"taskId": "t", **options})
    assert fake.requests == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, deeply_nested(), {1j}])
async def test_media_options_that_are_not_json_are_refused_before_sending(value: Any) -> None:
    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9", max_retries=0) as c:
        with pytest.raises(ConfigurationError, match="JSON values only"):
            await c.media.create("suno", "a song", seed=value)


@pytest.mark.parametrize("task_ids", [None, 5, 1.5, object(), ["ok", ""], ["ok", None]])
async def test_many_waits_refuse_what_is_not_a_collection_of_ids_before_any_wait(
    task_ids: Any,
) -> None:
    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9", max_retries=0) as c:
        with pytest.raises(ConfigurationError):
            await c.faceswap.wait_many(task_ids)
        with pytest.raises(ConfigurationError):
            async with c.faceswap.as_completed(task_ids) as finished:
                assert [task async for task in finished] == []


@pytest.mark.parametrize(
    ("events", "options"),
    [(None, {}), (42, {}), ("abc", {}), ("wait", {"clock": "x"}), ("wait", {"every": 10**400})],
)
async def test_throttle_refuses_what_it_cannot_use(events: Any, options: dict[str, Any]) -> None:
    async with GPTunnelClient(api_key="k-123", base_url="http://127.0.0.1:9", max_retries=0) as c:
        source = c.wait_for_result("t") if events == "wait" else events
        with pytest.raises(ConfigurationError):
            async for _ in throttle(source, **options):
                pass
        if events == "wait":
            source.close()


@pytest.mark.parametrize(
    ("path", "shown"),
    [(Path("songs"), "'songs'"), (PurePosixPath("a/b.png"), "'a/b.png'"), ("x", "'x'")],
)
def test_a_path_is_shown_as_its_text_not_its_repr(path: object, shown: str) -> None:
    assert describe(path) == shown


def test_a_task_given_for_its_id_is_told_to_pass_its_id() -> None:
    with pytest.raises(ConfigurationError, match=r"pass Task\.id, not the object"):
        check_task_id(Task(id="t-1", status="done"))


KEY_IN_ID_CALLS: dict[str, Callable[[GPTunnelClient, str], Any]] = {
    "get_result": lambda client, task_id: client.get_result(task_id),
    "media.result": lambda client, task_id: client.media.result(task_id),
    "wait_for_result": lambda client, task_id: client.wait_for_result(task_id),
    "wait_many": lambda client, task_id: client.wait_many([task_id]),
    "midjourney.upsample": lambda client, task_id: client.midjourney.upsample(task_id, 1),
    "midjourney.variation": lambda client, task_id: client.midjourney.variation(task_id, 1),
    "download_result": lambda client, task_id: client.download_result(task_id, "r.png"),
    "download_results": lambda client, task_id: client.download_results(task_id, "."),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call", KEY_IN_ID_CALLS.values(), ids=KEY_IN_ID_CALLS.keys())
@pytest.mark.parametrize(
    "shape",
    ["{key}", "id-{key}", "{key}\u200b", "{key}\n", " {key}", "x" * 300 + "{key}"],
    ids=["the key", "in it", "and unprintable", "and a newline", "and a space", "and too long"],
)
async def test_a_task_id_holding_the_api_key_is_refused_without_showing_it(
    fake: FakeGPTunnel, call: Any, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A task id is echoed into log lines and error texts, which never show the key: an id
    # that holds it (the key pasted in the wrong place) goes no further, and no error
    # about the argument shows it.
    key = "sk-Zq9xT3secretmK7pW2vL"
    async with GPTunnelClient(api_key=key, base_url=fake.base_url) as client:
        with pytest.raises(ConfigurationError) as caught:
            await call(client, shape.format(key=key))
        assert key not in str(caught.value)
    assert not [r for r in caplog.records if key in r.getMessage()]
    assert fake.requests == []


async def _coroutine_function() -> None:
    return None


def _generator_function() -> Iterator[int]:
    yield 1


async def _async_generator_function() -> AsyncIterator[int]:
    yield 1


class _AsyncCallable:
    async def __call__(self) -> None:
        return None


class _GeneratorCallable:
    def __call__(self) -> Iterator[int]:
        yield 1


class _PlainCallable:
    def __call__(self) -> float:
        return 1.0


# (value, taken by function, taken by plain_function)
CALLABLES: list[tuple[Any, bool, bool]] = [
    (lambda: 1.0, True, True),
    (math.floor, True, True),
    (_PlainCallable(), True, True),
    (functools.partial(math.floor, 1.5), True, True),
    (_coroutine_function, True, False),
    (functools.partial(_coroutine_function), True, False),
    (_AsyncCallable(), True, False),
    (_generator_function, False, False),
    (_async_generator_function, False, False),
    (_GeneratorCallable(), False, False),
    (None, False, False),
    (3, False, False),
    ("clock", False, False),
]


@pytest.mark.parametrize(("value", "as_function", "as_plain"), CALLABLES)
def test_a_callback_is_taken_only_if_its_body_will_run(
    value: Any, as_function: bool, as_plain: bool
) -> None:
    for check, taken in ((function, as_function), (plain_function, as_plain)):
        if taken:
            assert check("callback", value) is value
        else:
            with pytest.raises(ConfigurationError, match=r"^callback must be a"):
                check("callback", value)


@pytest.mark.parametrize("wallet", ["false", "0", 0, 1, None, [], "no"])
async def test_use_wallet_balance_must_be_a_bool(fake: FakeGPTunnel, wallet: Any) -> None:
    """A setting read as text (``"false"``) was truthy: ``imagine`` paid from the personal
    wallet, and ``balance`` read it, whatever the setting said."""
    async with fake.client() as client:
        with pytest.raises(ConfigurationError, match="use_wallet_balance must be a bool"):
            await client.midjourney.imagine("a fox", use_wallet_balance=wallet)
        with pytest.raises(ConfigurationError, match="use_wallet_balance must be a bool"):
            await client.midjourney.imagine_and_wait("a fox", use_wallet_balance=wallet)
        with pytest.raises(ConfigurationError, match="use_wallet_balance must be a bool"):
            await client.balance(use_wallet_balance=wallet)
    assert fake.requests == []


async def test_use_wallet_balance_true_or_false_is_sent_as_documented(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        for wallet in (True, False):
            await client.midjourney.imagine("a fox", use_wallet_balance=wallet)
            await client.balance(use_wallet_balance=wallet)
    imagines = [r.json for r in fake.requests if r.method == "POST"]
    balances = [r.query for r in fake.requests if r.method == "GET"]
    assert imagines == [{"prompt": "a fox", "useWalletBalance": True}, {"prompt": "a fox"}]
    assert balances == [{"useWalletBalance": "true"}, {}]


@pytest.mark.parametrize(
    ("url", "usable"),
    [
        ("https://exa mple.com/a", False),
        ("https://a%20b.com/", False),
        ("https://a<b.com/", False),
        ('https://a"b.com/', False),
        ("https://пример.рф/a", True),
        ("https://[::1]:8080/a", True),
        ("https://127.0.0.1/a", True),
        ("https://storage_1.internal/a", True),
        ("http://localhost:8080/v1", True),
    ],
)
async def test_a_host_with_a_character_no_host_name_has_is_refused_everywhere(
    url: str, usable: bool
) -> None:
    """The URL parser keeps ``exa mple.com`` as a host: it failed only at its look-up,
    after a paid create had sent it (a face swap's link, a media image, a webhook)."""
    checks: list[Callable[[], Any]] = [
        lambda: GPTunnelClient(api_key="k-123", base_url=url),
        lambda: WebhookReceiver(url),
    ]
    for check in checks:
        if usable:
            check()
        else:
            refused = "must name a host that can be looked|without control or whitespace"
            with pytest.raises(ConfigurationError, match=refused):
                check()
    local = "http://127.0.0.1:9"  # nothing listens on port 9
    async with GPTunnelClient(api_key="k-123", base_url=local, max_retries=0) as client:
        for create in (
            lambda: client.media.create("m", "p", images=[url]),
            lambda: client.faceswap.create(url, url, webhook=url),
        ):
            if usable:
                with pytest.raises(GPTunnelError) as caught:
                    await create()
                assert not isinstance(caught.value, ConfigurationError)
            else:
                with pytest.raises(ConfigurationError, match="must name a host"):
                    await create()
