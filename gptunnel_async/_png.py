"""Reading a PNG's size and the colours it uses, for Midjourney's inpaint mask checks.

Written by hand rather than with Pillow: the SDK needs only the header and the distinct
pixel values of small masks, and a 10 MB imaging library is not worth one check. zlib
(standard library) inflates the pixels; each row's filter is undone as the PNG
specification (section 9) describes.

The colours are read a whole row at a time with bytes operations that run in C (slices,
``set()`` of a row's bytes, ``bytes.translate``), never sample by sample in Python, and
at most ``MAX_CHECKED_ROWS`` rows of at most ``MAX_CHECKED_BYTES`` in all: reading
costs little whatever the PNG.
"""

from __future__ import annotations

import functools
import itertools
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Final, TypeAlias

import attrs

__all__ = ["PNG_SIGNATURE", "PngError", "PngImage", "read_png"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
"""Samples per pixel of each colour type: grey, RGB, palette, grey+alpha, RGBA."""

_DEPTHS: Final = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
"""The bit depths each colour type allows (PNG specification, table 11.1): decoders
refuse any other pairing, such as a 2-bit RGB image, so the API would too."""

Colour: TypeAlias = tuple[int, int, int]
"""A pixel's ``(r, g, b)``, each from 0 to 255."""

MAX_CHECKED_BYTES: Final = 2048 * 2048 * 4
"""The most pixel bytes (after inflating, before filters) whose colours are read: a
2048x2048 RGBA image, the size of a Midjourney grid. A larger image is checked for
size only, and its pixel data is never inflated."""

MAX_CHECKED_ROWS: Final = 16384
"""The most rows whose colours are read: eight times a Midjourney grid's 2048. Each row
costs a few microseconds of Python however narrow it is, and ``MAX_CHECKED_BYTES``
holds 8 million rows of one byte, so a taller image is checked for size only (its
pixel data is never inflated)."""

MAX_ROW_COLOURS: Final = 256
"""The most colours taken from one row of an RGB image: a row of a photograph may have
millions, and reading stops after the first row that shows a third colour anyway."""

MAX_FILTER_WORK: Final = 1024 * 1024
"""The most bytes whose filter is undone one byte at a time in Python (the Sub, Average
and Paeth filters: a quarter of a second's CPU at most); past it the colours are not
read (the image is checked for size only). Unfiltered rows and the Up filter cost
little."""


class PngError(ValueError):
    """The bytes are not a PNG this reader understands; the message says why."""


@attrs.frozen
class PngImage:
    """What the mask checks need of a PNG.

    Attributes:
        width: in pixels.
        height: in pixels.
        colours: the distinct colours used, each as an ``(r, g, b)`` tuple scaled to
            0-255 (alpha ignored). Rows are read in order until one shows a third
            colour, so past two colours the set holds those of the rows read by then
            (at most ``MAX_ROW_COLOURS`` of each row). ``None`` when the pixels are
            not read: an interlaced image, one past ``MAX_CHECKED_BYTES``,
            ``MAX_CHECKED_ROWS`` or ``MAX_FILTER_WORK``, or one of another size than
            ``read_png`` was told to expect.
    """

    width: int
    height: int
    colours: frozenset[tuple[int, int, int]] | None


_CHUNK_HEAD: Final = struct.Struct(">I4s")


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = _CHUNK_HEAD.unpack_from(data, position)
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


RowColours: TypeAlias = Callable[[bytes], set[Colour]]
"""The distinct colours of one row, from its bytes with the filter undone."""


def _sample_colours(line: bytes, depth: int, channels: int) -> set[Colour]:
    """The colours of a row of 8- or 16-bit samples (grey, grey+alpha, RGB, RGBA)."""
    samples = line if depth == 8 else line[::2]  # the high byte is enough to tell tones apart
    planes = [samples[c::channels] for c in range(3 if channels >= 3 else 1)]
    if all(plane == planes[0] for plane in planes):  # every pixel grey: sets in C
        return {(value, value, value) for value in set(planes[0])}
    return _true_colours(planes)


def _true_colours(planes: list[bytes]) -> set[Colour]:
    """The distinct ``(r, g, b)`` of a row's three planes, at most ``MAX_ROW_COLOURS``.

    Each pixel's samples are packed into the bytes of one 32-bit integer (by slice
    assignments, in C), so the set is made of integers rather than a tuple per pixel
    (four times quicker). The row is read ``_PIECE`` pixels at a time, and no further
    once it has shown ``MAX_ROW_COLOURS`` colours: a row of a million colours costs no
    more than its first few pieces."""
    packed = bytearray(4 * len(planes[0]))
    packed[0::4], packed[1::4], packed[2::4] = planes
    pixels = memoryview(packed).cast("I")
    keys: set[int] = set()
    for start in range(0, len(pixels), _PIECE):
        keys.update(pixels[start : start + _PIECE])
        if len(keys) >= MAX_ROW_COLOURS:
            break
    return {_unpacked(key) for key in itertools.islice(keys, MAX_ROW_COLOURS)}


_PIECE: Final = 16 * MAX_ROW_COLOURS
"""Pixels of a row of an RGB image read at once by ``_true_colours``."""


def _unpacked(key: int) -> Colour:
    red, green, blue, _ = key.to_bytes(4, sys.byteorder)
    return red, green, blue


@functools.cache
def _byte_samples(depth: int) -> tuple[frozenset[int], ...]:
    """For each byte value, the samples of ``depth`` bits (1, 2 or 4) packed in it."""
    mask = (1 << depth) - 1
    return tuple(
        frozenset((byte >> shift) & mask for shift in range(8 - depth, -1, -depth))
        for byte in range(256)
    )


def _packed_samples(line: bytes, depth: int, width: int) -> set[int]:
    """The distinct samples of a row of ``width`` samples of ``depth`` bits below 8:
    ``set()`` of its whole bytes in C, then a table's samples for each distinct byte
    (at most 256), and the samples of a last byte that ends in padding bits."""
    whole, rest = divmod(width * depth, 8)
    table = _byte_samples(depth)
    found: set[int] = set()
    for byte in set(line[:whole]):
        found |= table[byte]
        if len(found) == 1 << depth:
            break  # every value is there already
    if rest:
        last, mask = line[whole], (1 << depth) - 1
        found |= {(last >> shift) & mask for shift in range(8 - depth, 7 - rest, -depth)}
    return found


@attrs.frozen
class _IndexedRows:
    """The colours of rows of one sample per pixel of at most 8 bits: grey, or palette
    indices. ``canonical`` (a ``bytes.translate`` table) first gives every sample of a
    colour the same value, so that a row of few colours has few distinct bytes, however
    many palette entries share them."""

    depth: int
    width: int
    colours: tuple[Colour | None, ...]
    canonical: bytes | None

    def __call__(self, line: bytes) -> set[Colour]:
        if self.canonical is not None:
            line = line.translate(self.canonical)
        samples = set(line) if self.depth == 8 else _packed_samples(line, self.depth, self.width)
        found: set[Colour] = set()
        for sample in samples:
            colour = self.colours[sample]
            if colour is None:
                raise PngError("the PNG's palette is too short")
            found.add(colour)
        return found


def _indexed_rows(header: _Header, palette: bytes) -> _IndexedRows:
    """``_IndexedRows`` for a grey or palette image of ``header``."""
    values = 1 << header.depth
    colours: tuple[Colour | None, ...]
    if header.colour_type == 3:  # an index past the palette's end has no colour
        colours = tuple(
            (palette[3 * i], palette[3 * i + 1], palette[3 * i + 2])
            if 3 * i + 3 <= len(palette)
            else None
            for i in range(values)
        )
    else:
        scale = 255 // (values - 1)
        colours = tuple((i * scale, i * scale, i * scale) for i in range(values))
    return _IndexedRows(header.depth, header.width, colours, _canonical(colours, header.depth))


def _canonical(colours: tuple[Colour | None, ...], depth: int) -> bytes | None:
    """The ``bytes.translate`` table that replaces each sample packed in a byte by the
    first sample of its colour; ``None`` when no two samples share a colour."""
    first: dict[Colour, int] = {}
    value = [
        sample if colour is None else first.setdefault(colour, sample)
        for sample, colour in enumerate(colours)
    ]
    if value == list(range(len(colours))):
        return None
    mask, shifts = (1 << depth) - 1, range(0, 8, depth)
    return bytes(
        sum(value[(byte >> shift) & mask] << shift for shift in shifts) for byte in range(256)
    )


def _row_colours(header: _Header, palette: bytes) -> RowColours:
    """How to read the colours of a row of ``header``'s image."""
    if header.channels == 1 and header.depth <= 8:
        return _indexed_rows(header, palette)
    return functools.partial(_sample_colours, depth=header.depth, channels=header.channels)


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

    @property
    def stride(self) -> int:
        """Bytes per row, the filter's byte left out."""
        return (self.width * self.channels * self.depth + 7) // 8

    @property
    def expected(self) -> int:
        """Bytes of pixel data once inflated: each row and its filter's byte."""
        return self.height * (self.stride + 1)

    @property
    def readable(self) -> bool:
        """Whether the colours are read: not interlaced, and within the bounds."""
        return (
            not self.interlaced
            and self.expected <= MAX_CHECKED_BYTES
            and self.height <= MAX_CHECKED_ROWS
        )


def _parse(data: bytes) -> tuple[_Header, bytes, bytes]:
    """A PNG's header, palette and compressed pixels."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("it is not a PNG file")
    chunks: dict[bytes, bytes] = {}
    pixels: list[bytes] = []
    for kind, body in _chunks(data):
        if kind == b"IDAT":
            pixels.append(body)  # joined once: adding each to the rest was quadratic
        else:
            chunks[kind] = body
    header = _header(chunks.get(b"IHDR", b""))
    palette = chunks.get(b"PLTE", b"") if header.colour_type == 3 else b""
    return header, palette, b"".join(pixels)


def _header(body: bytes) -> _Header:
    if len(body) != 13:
        raise PngError("the PNG has no valid header")
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
    if depth not in _DEPTHS.get(colour_type, ()) or not width or not height:
        raise PngError("the PNG's header is not valid")
    return _Header(width, height, depth, colour_type, bool(interlace))


def read_png(data: bytes, size: tuple[int, int] | None = None) -> PngImage:
    """The size and colours of a PNG.

    Args:
        data: the PNG file's bytes.
        size: the ``(width, height)`` in pixels the caller needs, if any: a PNG of
            another size is returned as soon as its header is read, with its colours
            unread (``None``) and its pixel data never inflated.

    Raises:
        PngError: the bytes are not a readable PNG.
    """
    header, palette, pixels = _parse(data)
    wrong_size = size is not None and (header.width, header.height) != tuple(size)
    if wrong_size or not header.readable:
        return PngImage(header.width, header.height, None)
    raw = _inflate(pixels, header.expected)
    try:
        colours = _read_colours(raw, header, _row_colours(header, palette))
    except _TooCostly:
        colours = None
    return PngImage(header.width, header.height, colours)


def _read_colours(raw: bytes, header: _Header, row_colours: RowColours) -> frozenset[Colour]:
    """The colours of the rows of ``raw``, read until one shows a third colour."""
    step = max(1, header.channels * header.depth // 8)
    found: set[Colour] = set()
    for line in _unfilter(raw, header.stride, step, header.height):
        found |= row_colours(line)
        if len(found) > 2:
            break  # enough to know the mask is not two-toned
    return frozenset(found)


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
