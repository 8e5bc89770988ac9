"""A refused argument that carries a credential never quotes it: a URL's password (a
webhook behind HTTP Basic, a public URL), a webhook secret of the wrong type. The
``ConfigurationError`` lands in logs and error reports, which must not hand it out."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gptunnel_async import ConfigurationError, GPTunnelClient, WebhookVerificationError
from gptunnel_async.testing import FakeGPTunnel, sample_image
from gptunnel_async.webhooks import WebhookReceiver, parse_webhook

PASSWORD = "Pw7-never-shown-Kx2"
"""A password long enough that any piece of it found in a text is a leak."""

CREDENTIALS = f"hook-user:{PASSWORD}"

REFUSED_URLS = {
    "a trailing newline": f"https://{CREDENTIALS}@bot.example/hook\n",
    "a space inside": f"https://{CREDENTIALS}@bot.example/ho ok",
    "a control character": f"https://{CREDENTIALS}@bot.example/hook\x00",
    "over 2,048 characters": f"https://{CREDENTIALS}@bot.example/{'h' * 2100}",
    "a password longer than an error shows": f"https://user:{PASSWORD * 6}@bot.example/hook ",
    "as bytes": f"https://{CREDENTIALS}@bot.example/hook".encode(),
    "in a list": [f"https://{CREDENTIALS}@bot.example/hook"],
}


def _shown(exc: BaseException) -> str:
    """What an error shows of itself and of every exception a traceback shows with it: their
    messages, reprs and arguments. Not the traceback's file paths and source lines,
    which hold no argument's value but may hold a short one by chance (a secret ``x``
    in a temporary folder's random name)."""
    shown: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        shown += [*traceback.format_exception_only(seen), repr(seen), repr(seen.args)]
        # the chain as a traceback shows it: a context raised ``from None`` is not shown
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "".join(shown)


@pytest.mark.parametrize("url", REFUSED_URLS.values(), ids=REFUSED_URLS.keys())
@pytest.mark.parametrize("call", ["faceswap.create", "media.create", "create_task"])
async def test_a_refused_webhook_url_never_quotes_its_password(url: Any, call: str) -> None:
    """``webhook=`` read from the environment with a newline kept, say: the refusal
    showed the URL's token as ``***`` but its password whole."""
    creates: dict[str, Callable[[GPTunnelClient], Awaitable[Any]]] = {
        "faceswap.create": lambda client: client.faceswap.create(
            sample_image("source.png"), sample_image("face.png"), webhook=url
        ),
        "media.create": lambda client: client.media.create("suno", "a song", webhook=url),
        "create_task": lambda client: client.faceswap.create_task(
            "faceswap/create", {"webhook": url}
        ),
    }
    async with FakeGPTunnel() as fake, fake.client() as client:
        with pytest.raises(ConfigurationError) as caught:
            await creates[call](client)
        assert not fake.requests  # refused before any (paid) request
    assert PASSWORD[:8] not in _shown(caught.value)


REFUSED_PUBLIC_URLS = {
    "a query": f"https://{CREDENTIALS}@bot.example/hook?x=1",
    "another scheme": f"ftp://{CREDENTIALS}@bot.example/hook",
    "a password longer than an error shows": f"https://u:{PASSWORD * 6}@bot.example/h?x=1",
    "as bytes": f"https://{CREDENTIALS}@bot.example/hook".encode(),
}


@pytest.mark.parametrize("url", REFUSED_PUBLIC_URLS.values(), ids=REFUSED_PUBLIC_URLS.keys())
def test_a_refused_public_url_never_quotes_its_password(url: Any) -> None:
    """The receiver's ``repr`` hid a password in ``public_url``; its refusal of one with
    a query quoted it whole."""
    with pytest.raises(ConfigurationError) as caught:
        WebhookReceiver(url)
    assert PASSWORD[:8] not in _shown(caught.value)


@pytest.mark.parametrize(
    "url",
    [f"https://{CREDENTIALS}@bot.example/hook", f"https://{CREDENTIALS}@bot.example/hook "],
)
async def test_a_refused_forged_delivery_url_never_quotes_its_password(url: Any) -> None:
    async with FakeGPTunnel() as fake:
        with pytest.raises(ConfigurationError) as caught:
            await fake.forge_webhook(url.encode(), task_id="abc")
    assert PASSWORD[:8] not in _shown(caught.value)


SECRET = "a-webhook-secret-of-32-characters"


@pytest.mark.parametrize(
    "secret",
    [SECRET.encode(), bytearray(SECRET.encode()), [SECRET], {"secret": SECRET}],
    ids=["bytes", "bytearray", "list", "dict"],
)
def test_parse_webhook_never_quotes_a_secret_of_the_wrong_type(secret: Any) -> None:
    """``secret=os.environb[...]`` (bytes): the refusal quoted the secret, which forges
    deliveries, into the error report."""
    with pytest.raises(ConfigurationError) as caught:
        parse_webhook(b"{}", SECRET, secret=secret)
    assert SECRET[:8] not in _shown(caught.value)


@pytest.mark.parametrize(
    "secret", ["x", "changeme", "s" * 15, "a secret with spaces in it", "tab\tin-a-long-secret"]
)
def test_parse_webhook_refuses_a_secret_a_receiver_refuses(secret: str) -> None:
    """A receiver takes no secret under 16 printable ASCII characters, which a forger
    guesses; ``parse_webhook`` (the same check, for other web frameworks) took one of a
    character, and a delivery carrying it was accepted."""
    with pytest.raises(ConfigurationError, match="at least 16 printable ASCII"):
        WebhookReceiver("https://bot.example/hook", secret=secret)
    with pytest.raises(ConfigurationError, match="at least 16 printable ASCII") as caught:
        parse_webhook(b"{}", secret, secret=secret)
    assert not isinstance(caught.value, WebhookVerificationError)
    assert secret not in _shown(caught.value)


IMAGE_LINKS = {
    "spaces around it": f" https://{CREDENTIALS}@img.example/a.png",
    "a newline after it": f"https://{CREDENTIALS}@img.example/a.png\n",
    "another scheme, read as a path": f"ftp://{CREDENTIALS}@img.example/a.png",
    "no scheme, read as a path": f"{CREDENTIALS}@img.example/a.png",
}


@pytest.mark.parametrize("link", IMAGE_LINKS.values(), ids=IMAGE_LINKS.keys())
@pytest.mark.parametrize("call", ["faceswap.create", "media.create"])
async def test_a_refused_image_link_never_quotes_its_password(link: str, call: str) -> None:
    async with FakeGPTunnel() as fake, fake.client() as client:
        creates = {
            "faceswap.create": lambda: client.faceswap.create(link, sample_image("face.png")),
            "media.create": lambda: client.media.create("suno", "a song", images=[link]),
        }
        with pytest.raises(ConfigurationError) as caught:
            await creates[call]()
        assert not fake.requests
    assert PASSWORD[:8] not in _shown(caught.value)


@pytest.mark.parametrize("name", ["me@2x.png", "scans/a:b.png", "/tmp/x@y/face.png"])
async def test_a_missing_image_file_is_named_as_given(name: str) -> None:
    """Only a link taken for a path is masked: a file's own name shows whole."""
    async with FakeGPTunnel() as fake, fake.client() as client:
        with pytest.raises(ConfigurationError, match="cannot read") as caught:
            await client.faceswap.create(name, sample_image("face.png"))
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"{CREDENTIALS}@files.example/result.png",  # its scheme left out
        f"ftp://{CREDENTIALS}@files.example/result.png",
        f"https://{CREDENTIALS}@files.example/result.png".encode(),
    ],
)
async def test_a_refused_download_url_never_quotes_its_password(url: Any, tmp_path: Any) -> None:
    async with FakeGPTunnel() as fake, fake.client() as client:
        with pytest.raises(ConfigurationError) as caught:
            await client.download_result(url, tmp_path / "result.png")
    assert PASSWORD[:8] not in _shown(caught.value)
