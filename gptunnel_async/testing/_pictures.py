"""The demo's result picture: what a face swap does, drawn from the sample images as
``person + face -> result``.

PNG is read and written here by hand (zlib and struct) rather than with an imaging
library: the package depends on none, and the samples are small 8-bit RGB files.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final

from ..errors import ConfigurationError
from ._samples import sample_image

__all__ = ["face_swap_picture", "read_png", "write_png"]

Pixels = list[list[tuple[int, int, int]]]
"""Rows of RGB pixels."""

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_SCALE: Final = 3
_GAP: Final = 8
_WHITE: Final = (255, 255, 255)
_INK: Final = (60, 60, 60)


def _chunks(data: bytes) -> dict[bytes, bytes]:
    if not data.startswith(_SIGNATURE):
        raise ConfigurationError("not a PNG file")
    found: dict[bytes, bytes] = {}
    at = len(_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        found[kind] = found.get(kind, b"") + data[at + 8 : at + 8 + length]
        at += 12 + length
    return found


def _paeth(left: int, up: int, up_left: int) -> int:
    guess = left + up - up_left
    near = min((abs(guess - left), 0), (abs(guess - up), 1), (abs(guess - up_left), 2))[1]
    return (left, up, up_left)[near]


def read_png(data: bytes) -> Pixels:
    """The pixels of an 8-bit RGB, non-interlaced PNG (what the samples are).

    Raises:
        ConfigurationError: another kind of PNG, or not a PNG.
    """
    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    if (depth, colour, interlace) != (8, 2, 0):
        raise ConfigurationError("only 8-bit RGB PNGs without interlacing are read here")
    raw = zlib.decompress(chunks[b"IDAT"])
    stride, previous, rows = width * 3, bytearray(width * 3), []
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - 3] if x >= 3 else 0
            up, up_left = previous[x], previous[x - 3] if x >= 3 else 0
            predictor = (0, left, up, (left + up) // 2, _paeth(left, up, up_left))[kind]
            line[x] = (line[x] + predictor) & 0xFF
        rows.append([tuple(line[x : x + 3]) for x in range(0, stride, 3)])
        previous = line
    return rows  # type: ignore[return-value]  # three-element tuples


def write_png(pixels: Sequence[Sequence[tuple[int, int, int]]]) -> bytes:
    """An 8-bit RGB PNG of ``pixels`` (rows of equal length)."""
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(c for pixel in row for c in pixel) for row in pixels)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _scaled(pixels: Pixels) -> Pixels:
    return [
        [pixel for pixel in row for _ in range(_SCALE)] for row in pixels for _ in range(_SCALE)
    ]


def _sign(size: int, arrow: bool) -> Pixels:
    """A ``+`` or an arrow ``->``, ``size`` pixels square, in ink on white."""
    middle, half = size // 2, max(1, size // 16)
    canvas = [[_WHITE] * size for _ in range(size)]
    for y in range(size):
        for x in range(size // 4, size - size // 4):
            stroke = abs(y - middle) <= half
            if arrow:
                head = x >= middle and abs(y - middle) <= (size - size // 4 - x)
                stroke = stroke or head
            elif abs(x - middle) <= half and size // 4 <= y < size - size // 4:
                stroke = True
            if stroke:
                canvas[y][x] = _INK
    return canvas


def face_swap_picture() -> bytes:
    """``person + face -> result`` from the sample images, as one PNG: what the demo
    saves, so it shows what a face swap does (the emulator does not swap anything)."""
    person, face, result = (
        _scaled(read_png(sample_image(n))) for n in ("source.png", "face.png", "result.png")
    )
    size = len(person)
    parts = [person, _sign(size, arrow=False), face, _sign(size, arrow=True), result]
    blank = [_WHITE] * _GAP
    rows: Pixels = []
    for y in range(size):
        row = list(blank)
        for part in parts:
            row += part[y] + blank
        rows.append(row)
    margin = [[_WHITE] * len(rows[0]) for _ in range(_GAP)]
    return write_png(margin + rows + margin)
