"""Images and masks from users are bounded: only regular files are read, at most one byte
over the limit, a refused file's bytes stay out of every traceback frame, and a PNG's
pixel data inflates at most to what its header announces, its filters undone within a
fixed budget."""

from __future__ import annotations

import base64
import io
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError, GPTunnelClient
from gptunnel_async._images import (
    MAX_IMAGE_BYTES,
    _mask_bytes,
    check_mask,
    encode_image,
    image_link,
)
from gptunnel_async._png import (
    MAX_CHECKED_BYTES,
    MAX_FILTER_WORK,
    PngError,
    _add_bytes,
    _sample_colours,
    read_png,
)
from gptunnel_async.testing import sample_image

from .pngs import mask


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, raw: bytes, colour_type: int = 0) -> bytes:
    """An 8-bit PNG whose IDAT is ``raw`` (filter bytes included) as given."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def frames_hold(traceback: TracebackType | None, secret: bytes) -> bool:
    """Whether any frame of the SDK in ``traceback`` has a local whose value holds
    ``secret`` (the test's own frame holds it, of course)."""
    while traceback is not None:
        sdk = "gptunnel_async" in traceback.tb_frame.f_code.co_filename
        for value in traceback.tb_frame.f_locals.values() if sdk else ():
            if isinstance(value, bytes | bytearray) and secret in value:
                return True
            if isinstance(value, str) and secret.decode("latin-1") in value:
                return True
        traceback = traceback.tb_next
    return False


# -- only regular files, bounded reads --------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("as_text", [True, False])
async def test_a_fifo_is_refused_without_blocking(fifo: Path, as_text: bool) -> None:
    with pytest.raises(ConfigurationError, match="not a regular file"):
        await encode_image(str(fifo) if as_text else fifo)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        check_mask(fifo)
    with pytest.raises(ConfigurationError):  # text naming no regular file: not base64 either
        check_mask(str(fifo))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
async def test_a_device_is_refused_before_any_read(device: str) -> None:
    for value in (device, Path(device)):
        with pytest.raises(ConfigurationError, match="not a regular file"):
            await encode_image(value)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        check_mask(Path(device))


async def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        await encode_image(tmp_path)


async def test_a_file_over_the_limit_is_refused_after_reading_one_byte_more(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as file:  # sparse: 4 GiB, nothing on disk
        file.write(b"\x89PNG\r\n\x1a\n")
        file.truncate(4 * 1024**3)
    with pytest.raises(ConfigurationError, match=f"over the {MAX_IMAGE_BYTES} byte limit"):
        await encode_image(big)
    with pytest.raises(ConfigurationError, match="limit"):
        check_mask(big)


async def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="No such file"):
        await encode_image(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "typed", ["example.com/me.jpg", "www.example.com/face.png", "AgACAgIAAxkBAAIBQ2Z"]
)
async def test_text_that_is_neither_a_link_nor_a_file_says_how_it_was_read(typed: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        await encode_image(typed)
    assert "No such file" in str(refused.value)
    assert "(text that is no http(s) link or data: URI is a file path)" in str(refused.value)


PICTURE_TEXT = {
    # A picture's base64 without its "data:" header: the API's form, half-remembered.
    "PNG as bare base64": base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40)).decode(),
    "JPEG as bare base64": base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(40)).decode(),
    "WEBP as bare base64": base64.b64encode(b"RIFF\0\0\0\0WEBPVP8 " + bytes(40)).decode(),
    "a photo's bare base64": base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(9000)).decode(),
    # A picture's bytes decoded as text (latin-1 keeps every byte, NULs included).
    "PNG bytes as text": (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").decode("latin-1"),
    # Over the longest file name: still text the SDK took for a path.
    "a long word": "x" * 5000,
}
BASE64_ADVICE = "pass it as a data:image/png;base64,... URI, or pass the decoded bytes"
PICTURE_TEXT_ADVICE = {
    "PNG as bare base64": BASE64_ADVICE,
    "JPEG as bare base64": BASE64_ADVICE,
    "WEBP as bare base64": BASE64_ADVICE,
    "a photo's bare base64": BASE64_ADVICE,
    "PNG bytes as text": "a NUL character, so it is no file's path (pass a picture's bytes",
    "a long word": "(text that is no http(s) link or data: URI is a file path)",
}


@pytest.mark.parametrize("kind", sorted(PICTURE_TEXT))
async def test_text_that_cannot_be_a_path_says_what_to_pass_instead(kind: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        await encode_image(PICTURE_TEXT[kind], "source_image")
    text = str(refused.value)
    assert text.startswith("cannot read the source_image file ")
    assert PICTURE_TEXT_ADVICE[kind] in text
    assert "ValueError" not in text  # the class of os.open's refusal told nothing
    assert len(text) < 300  # the text itself is shown cut short


async def test_a_picture_opened_as_text_is_told_to_open_with_rb(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))  # not UTF-8
    with path.open(encoding="utf-8") as text, pytest.raises(ConfigurationError) as refused:
        await encode_image(text)  # type: ignore[arg-type]
    assert (
        str(refused.value)
        == 'cannot read the image: it is a text file object; open the file with "rb"'
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(min_size=8, max_size=300).filter(lambda b: not b.startswith(b"\x89P")))
async def test_a_refused_files_bytes_are_in_no_frame_of_the_error(
    tmp_path: Path, content: bytes
) -> None:
    secret = b"root:$6$hash-of-a-secret:" + content
    path = tmp_path / "shadow"
    path.write_bytes(secret)
    for attempt in (encode_image(str(path)), encode_image(path)):
        with pytest.raises(ConfigurationError) as raised:
            await attempt
        assert not frames_hold(raised.value.__traceback__, secret)
    with pytest.raises(ConfigurationError) as raised_mask:
        check_mask(path)
    assert not frames_hold(raised_mask.value.__traceback__, secret)


def test_a_refused_masks_bytes_are_in_no_frame_of_the_error(tmp_path: Path) -> None:
    grey = mask(grey_pixel=True)
    path = tmp_path / "mask.png"
    path.write_bytes(grey)
    for value in (path, grey):
        with pytest.raises(ConfigurationError, match="black and white") as raised:
            check_mask(value)
        if isinstance(value, Path):
            assert not frames_hold(raised.value.__traceback__, grey)


# -- PNG: bounded inflate, bounded work ----------------------------------------------------


@given(
    width=st.integers(1, 64),
    height=st.integers(1, 64),
    extra=st.integers(1, 3 * 1024 * 1024),
)
def test_pixel_data_larger_than_the_header_says_is_refused(
    width: int, height: int, extra: int
) -> None:
    expected = height * (width + 1)
    bomb = raw_png(width, height, bytes(expected + extra))
    with pytest.raises(PngError, match="larger than its header"):
        read_png(bomb)
    with pytest.raises(ConfigurationError, match="black-and-white PNG"):
        check_mask(bomb)


@given(width=st.integers(1, 64), height=st.integers(1, 64), short=st.integers(1, 64))
def test_pixel_data_shorter_than_the_header_says_is_refused(
    width: int, height: int, short: int
) -> None:
    expected = height * (width + 1)
    with pytest.raises(PngError, match="cut short"):
        read_png(raw_png(width, height, bytes(max(0, expected - short))))


def test_a_zlib_bomb_of_gigabytes_is_refused() -> None:
    inflater = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    body = b"".join(inflater.compress(zeros) for _ in range(1024)) + inflater.flush()
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
    with pytest.raises(ConfigurationError, match="larger than its header"):
        check_mask(bomb)


def test_an_image_over_the_checked_size_is_checked_for_size_only() -> None:
    side = 2049  # 2049 x 2049 RGBA is over MAX_CHECKED_BYTES; the data is never inflated
    assert 4 * side * side > MAX_CHECKED_BYTES
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"not zlib")
    assert read_png(data).colours is None


@pytest.mark.parametrize("kind", [1, 3, 4])
def test_slow_filters_past_the_work_budget_leave_the_colours_unread(kind: int) -> None:
    width = 1024
    over = MAX_FILTER_WORK // width + 1
    image = read_png(raw_png(width, over, (bytes([kind]) + bytes(width)) * over))
    assert (image.width, image.height, image.colours) == (width, over, None)
    within = read_png(raw_png(width, over - 1, (bytes([kind]) + bytes(width)) * (over - 1)))
    assert within.colours == frozenset({(0, 0, 0)})


def test_a_grid_sized_mask_filtered_up_is_read_whole() -> None:
    side = 2048
    rows = [b"\x02" + bytes(side)] * (side - 1) + [b"\x02" + bytes(side - 1) + b"\x80"]
    image = read_png(raw_png(side, side, b"".join(rows)))
    assert image.colours == frozenset({(0, 0, 0), (128, 128, 128)})
    with pytest.raises(ConfigurationError, match="1 other colour"):
        check_mask(raw_png(side, side, b"".join(rows)))


@given(st.data())
def test_adding_rows_bytewise_matches_the_specification(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 200))
    line = data.draw(st.binary(min_size=size, max_size=size))
    previous = data.draw(st.binary(min_size=size, max_size=size))
    expected = bytes((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
    assert _add_bytes(line, previous) == expected


@given(
    channels=st.sampled_from([1, 2, 3, 4]),
    pixels=st.lists(st.tuples(*[st.sampled_from([0, 1, 128, 255])] * 4), min_size=1, max_size=40),
)
def test_the_colours_of_a_row_are_its_distinct_pixels(
    channels: int, pixels: list[tuple[int, int, int, int]]
) -> None:
    line = bytes(sample for pixel in pixels for sample in pixel[:channels])
    expected = {pixel[:3] if channels >= 3 else (pixel[0],) * 3 for pixel in pixels}
    assert _sample_colours(line, 8, channels) == expected


# -- binary file objects ------------------------------------------------------------------


async def test_a_bytesio_or_a_binary_file_is_read_from_its_position(tmp_path: Path) -> None:
    png = mask(4, 4)
    encoded = await encode_image(io.BytesIO(png))
    assert encoded == "data:image/png;base64," + base64.b64encode(png).decode()
    moved = io.BytesIO(b"junk" + png)
    moved.seek(4)
    assert await encode_image(moved) == encoded
    path = tmp_path / "m.png"
    path.write_bytes(png)
    with path.open("rb") as file:
        assert await encode_image(file) == encoded
        file.seek(0)
        assert check_mask(file) == base64.b64encode(png).decode()
    assert check_mask(io.BytesIO(png), size=(4, 4)) == base64.b64encode(png).decode()


class Wrapper:
    """A file object that hands on what it does not have itself, as web frameworks'
    uploads and ``tempfile``'s wrappers do (``__getattr__``)."""

    def __init__(self, inner: io.BytesIO) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_file_object_wrapper_is_read_on_every_python() -> None:
    """``NamedTemporaryFile()`` and wrappers that hand ``read`` on from ``__getattr__``
    were refused on Python 3.12 and 3.13 (their runtime protocol check ignores
    ``__getattr__``) and read on 3.11."""
    png = mask(4, 4)
    encoded = "data:image/png;base64," + base64.b64encode(png).decode()
    with tempfile.NamedTemporaryFile() as named:
        named.write(png)
        named.seek(0)
        assert await encode_image(named) == encoded
        named.seek(0)
        assert check_mask(named, size=(4, 4)) == base64.b64encode(png).decode()
    assert await encode_image(Wrapper(io.BytesIO(png))) == encoded  # type: ignore[arg-type]
    assert check_mask(Wrapper(io.BytesIO(png))) == base64.b64encode(png).decode()  # type: ignore[arg-type]


async def test_a_file_object_over_the_limit_is_refused_reading_one_byte_more() -> None:
    big = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_IMAGE_BYTES)
    with pytest.raises(ConfigurationError, match="over the"):
        await encode_image(big)
    assert big.tell() == MAX_IMAGE_BYTES + 1


async def test_a_text_or_closed_file_object_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    path.write_bytes(b"not a picture")
    with path.open() as text, pytest.raises(ConfigurationError, match='"rb"'):
        await encode_image(text)  # type: ignore[arg-type]
    closed = io.BytesIO(b"x")
    closed.close()
    with pytest.raises(ConfigurationError, match="cannot read the image"):
        await encode_image(closed)
    with pytest.raises(ConfigurationError, match="cannot read the mask"):
        check_mask(closed)


async def test_a_gif_is_named_once_in_its_refusal() -> None:
    with pytest.raises(ConfigurationError) as caught:
        await encode_image(io.BytesIO(b"GIF89a" + b"\0" * 20))
    assert str(caught.value) == "the image is not a PNG, JPEG or WEBP file"


@pytest.mark.parametrize(
    "given_as",
    ["http//example.com/me.jpg", "https:/example.com/me.jpg", "./photos//me.png", "a/./b.png"],
)
async def test_a_missing_file_is_quoted_as_it_was_given(
    given_as: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path() normalises: "http//x" (a link missing its colon) would be shown as 'http/x'.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        await encode_image(given_as)
    assert repr(given_as) in str(caught.value)


@pytest.mark.parametrize(
    "link",
    [
        "HTTPS://example.com/me.jpg",
        "Http://example.com/me.jpg",
        "DATA:image/png;base64," + base64.b64encode(sample_image("face.png")).decode(),
    ],
)
async def test_a_link_is_one_in_any_case(link: str) -> None:
    # A URL's scheme is case-insensitive: "HTTPS://" was read as a file's path. It is
    # sent in lower case, which every server takes.
    scheme, _, rest = link.partition(":")
    assert await encode_image(link) == f"{scheme.lower()}:{rest}"


@pytest.mark.parametrize(
    "spaced",
    [" https://example.com/me.jpg", "https://example.com/me.jpg ", "\thttps://e.com/a.png\n"],
)
async def test_a_link_with_spaces_around_it_is_refused_as_such(spaced: str) -> None:
    # Pasted from a chat: it was read as a file's path ("no such file"), or sent as is.
    with pytest.raises(ConfigurationError, match="must not have spaces around it"):
        await encode_image(spaced)
    with pytest.raises(ConfigurationError, match="must not have spaces around it"):
        image_link(spaced, "images[0]")
    assert image_link(spaced.strip(), "images[0]") == spaced.strip()


@pytest.mark.parametrize(
    "given",
    ["data:image/png;base64,{b64}", "DATA:image/png;base64,{b64}", "  {b64}\n", "{b64}"],
    ids=["data URI", "in capitals", "spaces around", "bare base64"],
)
def test_a_mask_as_text_is_read_in_any_of_its_spellings(given: str) -> None:
    png = mask()
    text = given.format(b64=base64.b64encode(png).decode())
    assert _mask_bytes(text) == png


# -- a refusal names the image at fault ---------------------------------------------------


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _read_already() -> io.BytesIO:
    photo = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    photo.read()  # a bot that looked at the download first: the position is at its end
    return photo


BAD_IMAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "gif bytes": (lambda _: b"GIF89a" + b"\0" * 20, "is not a PNG, JPEG or WEBP file"),
    "heic file object": (
        lambda _: io.BytesIO(b"\0\0\0\x18ftypheic" + b"\0" * 20),
        "is not a PNG, JPEG or WEBP file",
    ),
    "gif file": (
        lambda folder: _written(folder / "a.gif", b"GIF89a" + b"\0" * 20),
        "a.gif' is not a PNG, JPEG or WEBP file",
    ),
    "empty bytes": (lambda _: b"", "is empty (0 bytes)"),
    "file object read already": (lambda _: _read_already(), "seek(0)"),
    "over the limit": (
        lambda _: b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES,
        f"over the {MAX_IMAGE_BYTES} byte limit",
    ),
    "a chat's file id": (lambda _: "AgACAgIAAxkBAAIBQ2Z", "No such file"),
    "empty text": (lambda _: "", "must not be an empty string"),
    "spaced link": (lambda _: " https://e.com/a.png", "must not have spaces around it"),
    "an int": (lambda _: 42, "must be a URL"),
}


@pytest.mark.parametrize("bad", sorted(BAD_IMAGES))
@pytest.mark.parametrize("at_fault", ["source_image", "face_image"])
async def test_a_face_swap_says_which_of_its_two_images_it_refuses(
    bad: str, at_fault: str, tmp_path: Path
) -> None:
    """A refusal said "the image is not a PNG, JPEG or WEBP file" (or an empty one
    that): a bot could not tell its user which of the two photos to send again."""
    make, reason = BAD_IMAGES[bad]
    good = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
    images = {"source_image": good, "face_image": good, at_fault: make(tmp_path)}
    other = "face_image" if at_fault == "source_image" else "source_image"
    async with GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(ConfigurationError) as refused:
            await client.faceswap.create(**images)  # type: ignore[arg-type]
    assert f"the {at_fault}" in str(refused.value)
    assert other not in str(refused.value)
    assert reason in str(refused.value)
