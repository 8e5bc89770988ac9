"""Reading a PNG's size and the colours it uses, for Midjourney's inpaint mask checks.

Written by hand rather than with Pillow: the SDK needs only the header and the distinct
pixel values of small masks, and a 10 MB imaging library is not worth one check. zlib
(standard library) inflates the pixels; each row's filter is undone as the PNG
specification (section 9) describes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Final

import attrs

__all__ = ["PNG_SIGNATURE", "PngError", "PngImage", "read_png"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
"""Samples per pixel of each colour type: grey, RGB, palette, grey+alpha, RGBA."""

MAX_CHECKED_BYTES: Final = 2048 * 2048 * 4
"""The most pixel bytes (after inflating, before filters) whose colours are read: a
2048x2048 RGBA image, the size of a Midjourney grid. A larger image is checked for
size only, and its pixel data is never inflated."""

MAX_FILTER_WORK: Final = 1024 * 1024
"""The most bytes whose filter is undone one byte at a time in Python (the Sub, Average
and Paeth filters: about a second's CPU at most); past it the colours are not read (the
image is checked for size only). Unfiltered rows and the Up filter cost little."""


class PngError(ValueError):
    """The bytes are not a PNG this reader understands; the message says why."""


@attrs.frozen
class PngImage:
    """What the mask checks need of a PNG.

    Attributes:
        width: in pixels.
        height: in pixels.
        colours: the distinct colours used, each as an ``(r, g, b)`` tuple scaled to
            0-255 (alpha ignored); ``None`` for an interlaced image, whose pixels are
            not read.
    """

    width: int
    height: int
    colours: frozenset[tuple[int, int, int]] | None


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if len(body) != length:
            raise PngError("the PNG is cut short")
        yield kind, body
        position += 12 + length


def _paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    a, b, c = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
    if a <= b and a <= c:
        return left
    return up if b <= c else corner


def _unfilter(raw: bytes, stride: int, step: int, height: int) -> Iterator[bytes]:
    """Each row of pixel bytes, with its filter undone; stops (``_TooCostly``) once more
    than ``MAX_FILTER_WORK`` bytes needed undoing one by one."""
    previous = bytes(stride)
    work = 0
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if len(line) != stride or kind > 4:
            raise PngError("the PNG's pixel data is damaged")
        if kind == 2:  # Up, the usual filter of flat masks
            line = _add_bytes(line, previous)
        elif kind:
            work += stride
            if work > MAX_FILTER_WORK:
                raise _TooCostly
            line = _unfilter_row(kind, bytearray(line), previous, step)
        previous = line
        yield line


class _TooCostly(Exception):  # caught by read_png: never leaves this module
    """Reading the colours would take more than ``MAX_FILTER_WORK``."""


def _add_bytes(line: bytes, previous: bytes) -> bytes:
    """``(a + b) & 0xFF`` for each pair of bytes, in C: each byte gets a 16-bit lane of a
    big integer, so one integer addition adds them all without carries crossing lanes."""
    size = len(line)
    wide_line, wide_previous = bytearray(2 * size), bytearray(2 * size)
    wide_line[1::2], wide_previous[1::2] = line, previous
    total = int.from_bytes(wide_line) + int.from_bytes(wide_previous)
    return total.to_bytes(2 * size + 1)[2::2]


def _unfilter_row(kind: int, line: bytearray, previous: bytes, step: int) -> bytes:
    for index in range(len(line)):
        left = line[index - step] if index >= step else 0
        up = previous[index]
        corner = previous[index - step] if index >= step else 0
        if kind == 1:
            predicted = left
        elif kind == 3:
            predicted = (left + up) // 2
        else:
            predicted = _paeth(left, up, corner)
        line[index] = (line[index] + predicted) & 0xFF
    return bytes(line)


def _colours(line: bytes, depth: int, channels: int, width: int) -> set[tuple[int, ...]]:
    """The distinct pixels of one row, as tuples of samples (alpha left out)."""
    if depth == 8:
        samples: bytes | list[int] = line
    elif depth == 16:
        samples = line[::2]  # the high byte is enough to tell tones apart
    else:
        per_byte, mask = 8 // depth, (1 << depth) - 1
        samples = [
            (line[i // per_byte] >> (8 - depth * (i % per_byte + 1))) & mask
            for i in range(width * channels)
        ]
    colour = 3 if channels >= 3 else 1  # alpha, when there is one, is the last sample
    planes = [samples[c : width * channels : channels] for c in range(colour)]
    if all(plane == planes[0] for plane in planes):  # every pixel grey: sets in C
        return {(value,) * colour for value in set(planes[0])}
    return set(zip(*planes, strict=True))


@attrs.frozen
class _Header:
    width: int
    height: int
    depth: int
    colour_type: int
    interlaced: bool

    @property
    def channels(self) -> int:
        return _CHANNELS[self.colour_type]


def _parse(data: bytes) -> tuple[_Header, bytes, bytes]:
    """A PNG's header, palette and compressed pixels."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("it is not a PNG file")
    chunks: dict[bytes, bytes] = {}
    for kind, body in _chunks(data):
        chunks[kind] = chunks.get(kind, b"") + body if kind == b"IDAT" else body
    header = _header(chunks.get(b"IHDR", b""))
    palette = chunks.get(b"PLTE", b"") if header.colour_type == 3 else b""
    return header, palette, chunks.get(b"IDAT", b"")


def _header(body: bytes) -> _Header:
    if len(body) != 13:
        raise PngError("the PNG has no valid header")
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
    if colour_type not in _CHANNELS or depth not in (1, 2, 4, 8, 16) or not width or not height:
        raise PngError("the PNG's header is not valid")
    return _Header(width, height, depth, colour_type, bool(interlace))


def read_png(data: bytes) -> PngImage:
    """The size and colours of a PNG.

    Raises:
        PngError: the bytes are not a readable PNG.
    """
    header, palette, pixels = _parse(data)
    width, height, depth, channels = header.width, header.height, header.depth, header.channels
    stride = (width * channels * depth + 7) // 8
    expected = height * (stride + 1)
    if header.interlaced or expected > MAX_CHECKED_BYTES:
        return PngImage(width, height, None)
    raw = _inflate(pixels, expected)
    scale = 255 // ((1 << min(depth, 8)) - 1)
    found: set[tuple[int, int, int]] = set()
    try:
        for line in _unfilter(raw, stride, max(1, channels * depth // 8), height):
            found |= {
                _rgb(pixel, scale, palette) for pixel in _colours(line, depth, channels, width)
            }
            if len(found) > 2:
                break  # enough to know the mask is not two-toned
    except _TooCostly:
        return PngImage(width, height, None)
    return PngImage(width, height, frozenset(found))


def _inflate(pixels: bytes, expected: int) -> bytes:
    """The pixel data inflated, at most ``expected`` bytes (what the header announces):
    data that inflates to more is refused before more than one extra byte is made, so
    a few megabytes of compressed zeros (a zlib bomb) cost no memory."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(pixels, expected + 1)
    except zlib.error as exc:
        raise PngError(f"the PNG's pixel data is damaged: {exc}") from None
    if len(raw) > expected:
        raise PngError("the PNG's pixel data is larger than its header says")
    if len(raw) < expected:
        raise PngError("the PNG's pixel data is cut short")
    return raw


def _rgb(pixel: tuple[int, ...], scale: int, palette: bytes) -> tuple[int, int, int]:
    """A pixel's samples as ``(r, g, b)`` from 0 to 255."""
    if len(pixel) == 1 and palette:
        entry = palette[3 * pixel[0] : 3 * pixel[0] + 3]
        if len(entry) != 3:
            raise PngError("the PNG's palette is too short")
        return entry[0], entry[1], entry[2]
    if len(pixel) == 1:
        grey = pixel[0] * scale
        return grey, grey, grey
    return pixel[0] * scale, pixel[1] * scale, pixel[2] * scale
