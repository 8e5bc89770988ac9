"""Small PNGs built for tests: any size, colour type, bit depth and row filters, so the
mask checks meet every way a PNG can be written."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

Pixel = tuple[int, ...]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _pack(samples: Sequence[int], depth: int) -> bytes:
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", sample * 257) for sample in samples)
    per_byte = 8 // depth
    out = bytearray()
    for start in range(0, len(samples), per_byte):
        byte = 0
        for index, sample in enumerate(samples[start : start + per_byte]):
            byte |= sample << (8 - depth * (index + 1))
        out.append(byte)
    return bytes(out)


def _filtered(kind: int, line: bytes, previous: bytes, step: int) -> bytes:
    out = bytearray()
    for index, value in enumerate(line):
        left = line[index - step] if index >= step else 0
        up = previous[index]
        corner = previous[index - step] if index >= step else 0
        if kind == 0:
            predicted = 0
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = up
        elif kind == 3:
            predicted = (left + up) // 2
        else:
            estimate = left + up - corner
            distances = [abs(estimate - left), abs(estimate - up), abs(estimate - corner)]
            predicted = (left, up, corner)[distances.index(min(distances))]
        out.append((value - predicted) & 0xFF)
    return bytes([kind]) + bytes(out)


def png(
    rows: Sequence[Sequence[Pixel]],
    *,
    colour_type: int = 0,
    depth: int = 8,
    filters: Sequence[int] = (0,),
    palette: Sequence[tuple[int, int, int]] = (),
    interlaced: bool = False,
) -> bytes:
    """A PNG of ``rows`` of pixels (tuples of samples at ``depth``), each row written
    with the next of ``filters`` in turn."""
    lines = [_pack([sample for pixel in row for sample in pixel], depth) for row in rows]
    return png_of_lines(
        lines,
        width=len(rows[0]),
        colour_type=colour_type,
        depth=depth,
        filters=filters,
        palette=b"".join(bytes(entry) for entry in palette),
        interlaced=interlaced,
    )


def png_of_lines(
    lines: Sequence[bytes],
    *,
    width: int,
    colour_type: int,
    depth: int,
    filters: Sequence[int] = (0,),
    palette: bytes = b"",
    interlaced: bool = False,
    idat_size: int = 0,
) -> bytes:
    """A PNG whose rows are ``lines`` of bytes as given (padding bits, 16-bit samples'
    low bytes and all), each filtered with the next of ``filters``; a ``palette`` of
    ``b""`` writes no PLTE chunk, and ``idat_size`` splits the pixel data into IDAT
    chunks of that many bytes."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    step = max(1, channels * depth // 8)
    previous = bytes(len(lines[0]))
    raw = bytearray()
    for number, line in enumerate(lines):
        raw += _filtered(filters[number % len(filters)], line, previous, step)
        previous = line
    header = struct.pack(">IIBBBBB", width, len(lines), depth, colour_type, 0, 0, int(interlaced))
    body = _chunk(b"IHDR", header)
    if palette:
        body += _chunk(b"PLTE", palette)
    pixels = zlib.compress(bytes(raw))
    size = idat_size or len(pixels)
    for start in range(0, len(pixels), size):
        body += _chunk(b"IDAT", pixels[start : start + size])
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def mask(width: int = 32, height: int = 32, *, grey_pixel: bool = False) -> bytes:
    """A black mask with a white square in the middle (and one grey pixel if asked)."""
    rows = [
        [
            (255,)
            if width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            else (0,)
            for x in range(width)
        ]
        for y in range(height)
    ]
    if grey_pixel:
        rows[0][0] = (128,)
    return png(rows)
