"""Arguments refused for what they are before what they hold: text that is not a
``str`` is refused by its type, never by characters it may not have (nor quoted), and
a number of seconds has an upper bound, named in its refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError, GPTunnelClient, throttle
from gptunnel_async._checks import MAX_WEBHOOK_URL_LENGTH, text
from gptunnel_async.families import _endpoint_path
from gptunnel_async.fleet._keys import fleet_key
from gptunnel_async.testing import DEFAULT_API_KEY, FakeGPTunnel
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

HOOK = "https://bot.example/hook"
SECRET = "a-receiver-secret-of-enough-length"

TEXT_ARGUMENTS: dict[str, tuple[str, Callable[[Any], object]]] = {
    "the client's key": ("api_key", lambda value: GPTunnelClient(api_key=value)),
    "the emulator's key": ("api_key", lambda value: FakeGPTunnel(api_key=value)),
    "a receiver's secret": ("secret", lambda value: WebhookReceiver(HOOK, secret=value)),
    "a receiver's key": ("api_key", lambda value: WebhookReceiver(HOOK, api_key=value)),
    "parse_webhook's secret": ("secret", lambda value: parse_webhook(b"{}", "t", secret=value)),
    "parse_webhook's key": (
        "api_key",
        lambda value: parse_webhook(b"{}", SECRET, secret=SECRET, api_key=value),
    ),
    "a create_task path": ("path", lambda value: _endpoint_path(value)),
    "a fleet's name": ("name", lambda value: fleet_key("gptunnel", value, "due")),
    "a fleet's prefix": ("prefix", lambda value: fleet_key(value, "default", "due")),
}

NOT_TEXT = st.one_of(
    st.binary(min_size=1),
    st.integers(),
    st.floats(),
    st.lists(st.text(min_size=1), min_size=1),
    st.builds(bytearray, st.binary(min_size=1)),
)


@pytest.mark.parametrize("case", list(TEXT_ARGUMENTS))
@given(value=NOT_TEXT)
def test_text_that_is_not_a_str_is_refused_by_its_type_alone(case: str, value: Any) -> None:
    """``GPTunnelClient(api_key=b"...")`` said the key held control, non-ASCII or
    whitespace characters: it holds none, it is bytes."""
    name, call = TEXT_ARGUMENTS[case]
    with pytest.raises(ConfigurationError) as caught:
        call(value)
    fix = ": decode it first (.decode())" if isinstance(value, bytes | bytearray) else ""
    assert str(caught.value) == f"{name} must be text (str), got {type(value).__name__}{fix}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"sk-bytes-key", "api_key must be text (str), got bytes: decode it first (.decode())"),
        (
            bytearray(b"sk-key"),
            "api_key must be text (str), got bytearray: decode it first (.decode())",
        ),
        (12345, "api_key must be text (str), got int"),
        (None, "api_key must be text (str), got NoneType"),
    ],
)
def test_a_key_that_is_not_text_says_what_it_is_and_how_to_fix_bytes(
    value: object, message: str
) -> None:
    """``api_key=b"..."`` said "got a bytes" and left the fix to guess; an int "got a int"."""
    with pytest.raises(ConfigurationError) as caught:
        text("api_key", value)
    assert str(caught.value) == message


@pytest.mark.parametrize("case", ["the client's key", "the emulator's key", "a receiver's secret"])
def test_text_with_characters_it_may_not_have_is_still_refused_for_them(case: str) -> None:
    _, call = TEXT_ARGUMENTS[case]
    with pytest.raises(ConfigurationError, match=r"(?i)api.key|secret") as caught:
        call("a key\nwith-a-newline-in-it")
    assert "must be text (str)" not in str(caught.value)
    assert "with-a-newline" not in str(caught.value)


class _Event(NamedTuple):
    task_id: str
    status: str
    percent: int


async def _one_event() -> AsyncIterator[_Event]:
    yield _Event("t", "running", 1)


SECONDS_ARGUMENTS: dict[str, tuple[str, Callable[[Any], object]]] = {
    "the client's request timeout": (
        "timeout",
        lambda value: GPTunnelClient(api_key=DEFAULT_API_KEY, timeout=value),
    ),
    "throttle's interval": (
        "every",
        lambda value: asyncio.run(anext(throttle(_one_event(), value))),
    ),
}


@pytest.mark.parametrize("case", list(SECONDS_ARGUMENTS))
@given(seconds=st.floats(min_value=86400, exclude_min=True, allow_infinity=False))
def test_seconds_over_a_day_are_refused_naming_the_bound(case: str, seconds: float) -> None:
    """``throttle(every=1e300)`` held every event after the first practically forever."""
    name, call = SECONDS_ARGUMENTS[case]
    with pytest.raises(ConfigurationError, match=rf"^{name} must be .*a day \(86400\)"):
        call(seconds)


@pytest.mark.parametrize("case", list(SECONDS_ARGUMENTS))
@pytest.mark.parametrize("seconds", [1, 86400, 86400.0])
def test_seconds_up_to_a_day_are_taken(case: str, seconds: float) -> None:
    _, call = SECONDS_ARGUMENTS[case]
    made = call(seconds)
    if isinstance(made, GPTunnelClient):
        asyncio.run(made.close())


async def test_throttle_takes_no_interval_at_all() -> None:
    events = [event async for event in throttle(_one_event(), every=0)]
    assert [event.percent for event in events] == [1]


@pytest.mark.parametrize("seconds", [86400.5, 1e300])
async def test_a_download_deadline_over_a_day_is_refused(
    fake: FakeGPTunnel, tmp_path: Path, seconds: float
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    async with fake.client() as client:
        task = await client.get_result(task_id)
        with pytest.raises(ConfigurationError, match=r"timeout must be .*at most a day"):
            await client.download_result(task, tmp_path / "out.png", timeout=seconds)
        with pytest.raises(ConfigurationError, match=r"timeout must be .*at most a day"):
            await client.download_results(task, tmp_path, timeout=seconds)
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))


RECEIVER_URLS = {
    "a space in the path": "https://user:pw-of-hook@bot.example/my hook",
    "a NUL in the path": "https://user:pw-of-hook@bot.example/hook\x00",
    "a tab in the path": "https://user:pw-of-hook@bot.example/ho\tok",
    "a newline after it": "https://user:pw-of-hook@bot.example/hook\n",
    "a delivery URL over the bound": "https://user:pw-of-hook@bot.example/" + "h" * 2000,
    "a public URL over the bound": "https://user:pw-of-hook@bot.example/" + "h" * 2100,
}


@pytest.mark.parametrize("case", list(RECEIVER_URLS))
def test_a_receiver_refuses_a_url_no_create_would_send(case: str) -> None:
    """A space or NUL went out percent-encoded (another path than the server's), and a
    callback URL over 2048 characters was refused only by each paid create."""
    with pytest.raises(ConfigurationError, match="public_url") as caught:
        WebhookReceiver(RECEIVER_URLS[case])
    assert "pw-of-hook" not in str(caught.value)
    assert "***@bot.example" in str(caught.value)


@given(st.integers(min_value=1, max_value=MAX_WEBHOOK_URL_LENGTH))
def test_a_receiver_takes_any_url_whose_delivery_url_fits(length: int) -> None:
    secret = "s" * 16
    fixed = len(f"https://bot.example/?token={secret}")
    path = "p" * max(0, length - fixed)
    receiver = WebhookReceiver(f"https://bot.example/{path}", secret=secret)
    assert len(receiver.url) == max(length, fixed)


@given(st.integers(min_value=MAX_WEBHOOK_URL_LENGTH + 1, max_value=3 * MAX_WEBHOOK_URL_LENGTH))
def test_a_receiver_refuses_any_url_whose_delivery_url_does_not_fit(length: int) -> None:
    secret = "s" * 16
    path = "p" * (length - len(f"https://bot.example/?token={secret}"))
    with pytest.raises(ConfigurationError, match=f"over the {MAX_WEBHOOK_URL_LENGTH}"):
        WebhookReceiver(f"https://bot.example/{path}", secret=secret)
