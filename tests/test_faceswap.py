"""client.faceswap: images become what the API takes, create's request shape, swap's flow."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from aioresponses import aioresponses
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError, GPTunnelClient, ProgressEvent
from gptunnel_async._images import MAX_IMAGE_BYTES, encode_image, sniff_image_type

from .conftest import ScriptedAPI, task_json

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16


@pytest.mark.parametrize(
    ("data", "mime"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]
)
def test_image_type_is_sniffed_from_content(data: bytes, mime: str) -> None:
    assert sniff_image_type(data) == mime


@pytest.mark.parametrize("data", [b"GIF89a....", b"%PDF-1.7", b"", b"RIFF\x00\x00\x00\x00WAVE"])
def test_other_content_is_refused(data: bytes) -> None:
    with pytest.raises(ConfigurationError, match="PNG, JPEG or WEBP"):
        sniff_image_type(data)


@pytest.mark.parametrize(
    "value",
    [
        "https://cdn.example/face.jpg",
        "http://x/y.png",
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "data:image/jpeg;base64," + base64.b64encode(JPEG).decode(),
    ],
)
async def test_urls_and_data_uris_of_images_pass_through(value: str) -> None:
    assert await encode_image(value) == value


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("http://", "the image link must be an absolute http(s) URL"),
        ("https://[::1", "the image link must be an absolute http(s) URL"),
        ("https://exa mple.com/face.jpg", "must name a host that can be looked up"),
        ("data:image/png;base64,AAAA", "the image data: URI is not a PNG, JPEG or WEBP file"),
        ("data:image/png;base64,", "the image data: URI is empty"),
        ("data:image/png;base64,%%%", "the image data: URI is not valid base64"),
        ("data:image/png,\x89PNG", "the image data: URI must be base64"),
        ("data:text/plain;base64,QUJD", "the image data: URI is not a PNG, JPEG or WEBP file"),
    ],
)
async def test_a_link_or_data_uri_that_is_no_image_is_refused_before_a_paid_create(
    value: str, complaint: str
) -> None:
    """They went to the API as they were: a link with no host, a data: URI of text."""
    with pytest.raises(ConfigurationError, match=re.escape(complaint)):
        await encode_image(value)


@given(st.binary(max_size=64), st.sampled_from(["image/png", "image/jpeg", "text/plain", ""]))
async def test_a_data_uri_is_sent_as_its_bytes_would_be(data: bytes, mime: str) -> None:
    """A ``data:`` URI is checked as the bytes it holds are: refused as they would be,
    or sent as they would be, with the type sniffed from them."""
    uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    try:
        expected: str | None = await encode_image(data)
    except ConfigurationError:
        expected = None
    if expected is None:
        with pytest.raises(ConfigurationError):
            await encode_image(uri)
    else:
        assert await encode_image(uri) == expected


async def test_bytes_become_a_data_uri() -> None:
    encoded = await encode_image(JPEG)
    assert encoded == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()


async def test_a_path_is_read_and_sniffed_whatever_its_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "photo.jpg"
    misnamed.write_bytes(PNG)
    assert (await encode_image(misnamed)).startswith("data:image/png;base64,")
    assert (await encode_image(str(misnamed))).startswith("data:image/png;base64,")


async def test_too_large_images_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * MAX_IMAGE_BYTES)
    with pytest.raises(ConfigurationError, match="limit"):
        await encode_image(big)
    with pytest.raises(ConfigurationError, match="limit"):
        await encode_image(big.read_bytes())


@pytest.mark.parametrize("value", ["", "  ", "/no/such/file.png", 42])
async def test_unusable_image_values_are_refused(value: object) -> None:
    with pytest.raises(ConfigurationError):
        await encode_image(value)  # type: ignore[arg-type]


async def test_create_posts_the_documented_json(mocked: aioresponses) -> None:
    mocked.post(
        re.compile(r"^https://gptunnel\.ru/v1/faceswap/create$"), payload=task_json(status="idle")
    )
    async with GPTunnelClient(api_key="sk-abc") as client:
        task = await client.faceswap.create(
            "https://a/source.png", PNG, webhook="https://bot.example/hook"
        )
    assert task.status == "idle"
    [(method, url)] = mocked.requests
    assert (method, url.path) == ("POST", "/v1/faceswap/create")
    [call] = mocked.requests[(method, url)]
    assert call.kwargs["headers"]["Authorization"] == "sk-abc"
    assert call.kwargs["headers"]["Content-Type"] == "application/json"
    assert json.loads(call.kwargs["data"].getvalue()) == {
        "sourceImage": "https://a/source.png",
        "faceImage": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "webhook": "https://bot.example/hook",
    }


async def test_create_leaves_out_an_absent_webhook(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(task_json(status="idle"))
    await client.faceswap.create("https://a/1.png", "https://a/2.png")
    assert json.loads(api.requests[0]["body"]) == {
        "sourceImage": "https://a/1.png",
        "faceImage": "https://a/2.png",
    }


async def test_swap_creates_then_waits_with_progress(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(
        task_json(status="idle"),
        task_json(status="running", percent=50),
        task_json(status="done", percent=100),
    )
    seen: list[ProgressEvent] = []
    task = await client.faceswap.swap("https://a/1.png", PNG, on_progress=seen.append)
    assert task.is_done
    assert [e.percent for e in seen] == [50, 100]
    assert [r["path"] for r in api.requests] == [
        "/v1/faceswap/create",
        "/v1/faceswap/result",
        "/v1/faceswap/result",
    ]
    assert api.requests[1]["query"] == {"taskId": "task-1"}
