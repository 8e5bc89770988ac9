"""Images and masks from users are bounded: only regular files are read, at most one byte
over the limit, a refused file's bytes stay out of every traceback frame, and a PNG's
pixel data inflates at most to what its header announces, its filters undone within a
fixed budget."""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from pathlib import Path
from types import TracebackType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError
from gptunnel_async._images import MAX_IMAGE_BYTES, check_mask, encode_image
from gptunnel_async._png import (
    MAX_CHECKED_BYTES,
    MAX_FILTER_WORK,
    PngError,
    _add_bytes,
    _colours,
    read_png,
)

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
    "typed",
    ["http//example.com/me.jpg", "https:/example.com/me.jpg", "./photos//me.png", "a/./b.png"],
)
async def test_a_missing_file_is_quoted_as_it_was_given(
    typed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path() normalises: "http//x" (a link missing its colon) would be shown as 'http/x'.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        await encode_image(typed)
    assert repr(typed) in str(caught.value)
