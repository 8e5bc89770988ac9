"""The inpaint mask check's PNG reader gives the verdicts of a plain decoder that reads
every sample one by one (written here, from the PNG specification), on PNGs of every
colour type and bit depth; and its work is bounded: the size is compared before any
pixel is inflated, rows past a bound and pairings the specification forbids are never
read, and a row of millions of colours is read only until enough of them showed."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError
from gptunnel_async._images import MASK_TONES, check_mask
from gptunnel_async._png import (
    MAX_CHECKED_ROWS,
    MAX_ROW_COLOURS,
    PngError,
    read_png,
)

from .pngs import png_of_lines

Colour = tuple[int, int, int]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
PAIRINGS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4)]
PAIRINGS += [(3, 8), (4, 8), (4, 16), (6, 8), (6, 16)]


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def header_only(width: int, height: int, depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG of that header whose IDAT is ``idat`` as given (not zlib, say)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# -- the reference: a plain decoder, one sample at a time ------------------------------------


def paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    distances = [abs(estimate - left), abs(estimate - up), abs(estimate - corner)]
    return (left, up, corner)[distances.index(min(distances))]


def reference_pixels(data: bytes) -> tuple[int, int, list[list[Colour | None]]]:
    """Width, height and each row's pixels as ``(r, g, b)`` (``None`` for a palette
    index with no entry), decoded plainly: every filter undone byte by byte, every
    sample unpacked on its own, a 16-bit sample read by its high byte."""
    chunks: dict[bytes, bytes] = {}
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        chunks[kind] = chunks.get(kind, b"") + body if kind == b"IDAT" else body
        position += 12 + length
    width, height, depth, colour_type, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    channels = CHANNELS[colour_type]
    stride = (width * channels * depth + 7) // 8
    step = max(1, channels * depth // 8)
    raw = zlib.decompress(chunks[b"IDAT"])
    previous = [0] * stride
    rows = []
    for row in range(height):
        kind = raw[row * (stride + 1)]
        line = list(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            corner = previous[i - step] if i >= step else 0
            up = previous[i]
            predicted = [0, left, up, (left + up) // 2, paeth(left, up, corner)][kind]
            line[i] = (line[i] + predicted) & 0xFF
        previous = line
        samples = unpacked(line, depth, width * channels)
        pixels = [samples[at : at + channels] for at in range(0, width * channels, channels)]
        rows.append(
            [colour(pixel, depth, chunks.get(b"PLTE", b""), colour_type) for pixel in pixels]
        )
    return width, height, rows


def unpacked(line: list[int], depth: int, count: int) -> list[int]:
    if depth == 16:
        return line[0::2]
    bits = "".join(f"{byte:08b}" for byte in line)
    return [int(bits[at * depth : (at + 1) * depth], 2) for at in range(count)]


def colour(pixel: list[int], depth: int, palette: bytes, colour_type: int) -> Colour | None:
    if colour_type == 3:
        entry = palette[3 * pixel[0] : 3 * pixel[0] + 3]
        return (entry[0], entry[1], entry[2]) if len(entry) == 3 else None
    scale = 255 // ((1 << min(depth, 8)) - 1)
    if len(pixel) >= 3:
        return pixel[0] * scale, pixel[1] * scale, pixel[2] * scale
    return pixel[0] * scale, pixel[0] * scale, pixel[0] * scale


def reference_colours(rows: list[list[Colour | None]]) -> frozenset[Colour]:
    """The colours of the rows read in order until one shows a third colour."""
    found: set[Colour] = set()
    for row in rows:
        if None in row:
            raise PngError("the PNG's palette is too short")
        found |= {pixel for pixel in row if pixel is not None}
        if len(found) > 2:
            break
    return frozenset(found)


Verdict = tuple[Literal["accepted", "size", "colours", "not a png"], int]


def reference_verdict(data: bytes, size: tuple[int, int] | None) -> Verdict:
    width, height, rows = reference_pixels(data)
    if size is not None and (width, height) != size:
        return "size", 0
    try:
        others = len(reference_colours(rows) - MASK_TONES)
    except PngError:
        return "not a png", 0
    return ("colours", others) if others else ("accepted", 0)


def verdict(data: bytes, size: tuple[int, int] | None) -> Verdict:
    try:
        sent = check_mask(data, size)
    except ConfigurationError as exc:
        text = str(exc)
        if "the docs require the same size" in text:
            return "size", 0
        if text.startswith("mask must be black and white only"):
            return "colours", int(text.split("it has ")[1].split()[0])
        assert text.startswith("mask must be a black-and-white PNG"), text
        return "not a png", 0
    assert sent == base64.b64encode(data).decode()
    return "accepted", 0


# -- random PNGs of every kind, mostly black and white ---------------------------------------


@st.composite
def line_bytes(draw: st.DrawFn, colour_type: int, depth: int, width: int) -> bytes:
    """One row's bytes, padding bits and 16-bit low bytes included: mostly black or
    white pixels (all of a sub-byte row's bits set or clear), some of any value."""
    channels = CHANNELS[colour_type]
    if depth < 8 or channels == 1:
        size = (width * depth + 7) // 8
        tones = st.sampled_from([0x00, 0xFF]) | st.integers(0, 255)
        return bytes(draw(st.lists(tones, min_size=size, max_size=size)))
    sample = depth // 8
    colours = 3 if channels >= 3 else 1
    out = b""
    for _ in range(width):
        tone = draw(st.sampled_from([b"\x00", b"\xff", b""]))
        body = tone * (sample * colours) or draw(
            st.binary(min_size=sample * colours, max_size=sample * colours)
        )
        out += body + draw(
            st.binary(
                min_size=sample * (channels - colours), max_size=sample * (channels - colours)
            )
        )
    return out


@st.composite
def palettes(draw: st.DrawFn, depth: int) -> bytes:
    """A palette of black, white and other entries: mostly as long as the indices need,
    sometimes shorter (some indices then have no colour), or none at all."""
    entry = st.sampled_from([b"\x00\x00\x00", b"\xff\xff\xff"]) | st.binary(min_size=3, max_size=3)
    full = draw(st.booleans())
    size = 1 << depth
    count = st.just(size) if full else st.integers(0, size)
    entries = draw(count.flatmap(lambda n: st.lists(entry, min_size=n, max_size=n)))
    return b"".join(entries)


@st.composite
def pngs(draw: st.DrawFn) -> bytes:
    colour_type, depth = draw(st.sampled_from(PAIRINGS))
    width, height = draw(st.integers(1, 12)), draw(st.integers(1, 5))
    lines = [draw(line_bytes(colour_type, depth, width)) for _ in range(height)]
    return png_of_lines(
        lines,
        width=width,
        colour_type=colour_type,
        depth=depth,
        filters=draw(st.lists(st.integers(0, 4), min_size=1, max_size=5)),
        palette=draw(palettes(depth)) if colour_type == 3 else b"",
        idat_size=draw(st.sampled_from([0, 1, 7])),
    )


@settings(max_examples=1500)
@given(pngs(), st.data())
def test_the_mask_check_gives_the_verdict_of_a_plain_decoder(
    data: bytes, draw: st.DataObject
) -> None:
    width, height, rows = reference_pixels(data)
    size = draw.draw(
        st.sampled_from([None, (width, height), (width + 1, height), (width, 1 + height)])
    )
    assert verdict(data, size) == reference_verdict(data, size)
    try:
        expected: frozenset[Colour] | None = reference_colours(rows)
    except PngError:
        expected = None
    if expected is None:
        with pytest.raises(PngError, match="palette is too short"):
            read_png(data)
    else:
        assert read_png(data) == read_png(data, (width, height))
        assert read_png(data).colours == expected


# -- bounded work ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "idat", [b"not zlib", zlib.compress(bytes(64 * 1024 * 1024))], ids=["damaged", "zlib bomb"]
)
def test_a_mask_of_another_size_is_refused_for_its_size_before_its_pixels_are_inflated(
    idat: bytes,
) -> None:
    data = header_only(131072, 1023, 1, 0, idat)
    with pytest.raises(ConfigurationError, match=r"is 131072x1023 pixels, but .* 1024x1024"):
        check_mask(data, (1024, 1024))
    image = read_png(data, (1024, 1024))
    assert (image.width, image.height, image.colours) == (131072, 1023, None)
    with pytest.raises(ConfigurationError, match="black-and-white PNG"):
        check_mask(data)  # without a size, the pixels are read and found damaged


def test_a_grey_mask_of_another_size_is_refused_for_its_size() -> None:
    grey = png_of_lines([b"\x80" * 8] * 8, width=8, colour_type=0, depth=8)
    with pytest.raises(ConfigurationError, match="is 8x8 pixels"):
        check_mask(grey, (16, 16))
    with pytest.raises(ConfigurationError, match="1 other colour"):
        check_mask(grey, (8, 8))


def test_an_image_taller_than_the_rows_read_is_checked_for_size_only() -> None:
    tall = header_only(8, MAX_CHECKED_ROWS + 1, 1, 0, b"never inflated")
    assert read_png(tall).colours is None
    assert check_mask(tall, (8, MAX_CHECKED_ROWS + 1))
    within = png_of_lines([b"\x80"] * MAX_CHECKED_ROWS, width=1, colour_type=0, depth=8)
    assert read_png(within).colours == frozenset({(128, 128, 128)})


@pytest.mark.parametrize(
    ("colour_type", "depth"),
    [(2, 1), (2, 2), (2, 4), (3, 16), (4, 1), (4, 2), (4, 4), (6, 1), (6, 2), (6, 4), (0, 3)],
)
def test_a_bit_depth_the_colour_type_does_not_allow_is_no_png(colour_type: int, depth: int) -> None:
    data = header_only(21845, 1000, depth, colour_type, zlib.compress(bytes(8)))
    with pytest.raises(PngError, match="header is not valid"):
        read_png(data)
    with pytest.raises(ConfigurationError, match="black-and-white PNG"):
        check_mask(data)


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_a_palette_image_without_a_palette_is_no_png(depth: int) -> None:
    data = png_of_lines([bytes(4)] * 2, width=32 // depth, colour_type=3, depth=depth)
    with pytest.raises(ConfigurationError, match="palette is too short"):
        check_mask(data)


def test_a_row_of_many_colours_is_read_until_enough_showed() -> None:
    width = 100_000  # each pixel a colour of its own
    line = b"".join(pixel.to_bytes(3, "big") for pixel in range(width))
    data = header_only(width, 1, 8, 2, zlib.compress(b"\x00" + line))
    colours = read_png(data).colours
    assert colours is not None and len(colours) == MAX_ROW_COLOURS
    assert all(int.from_bytes(bytes(colour), "big") < width for colour in colours)
    with pytest.raises(ConfigurationError, match=r"it has 25[4-6] other colours"):
        check_mask(data)


@given(st.integers(1, 40), st.sampled_from([1, 2, 4, 8]))
def test_pixel_data_split_into_many_chunks_reads_as_one(idat_size: int, depth: int) -> None:
    lines = [bytes([0xFF, 0x00, 0x0F, 0xF0])] * 6
    whole = png_of_lines(lines, width=32 // depth, colour_type=0, depth=depth)
    split = png_of_lines(lines, width=32 // depth, colour_type=0, depth=depth, idat_size=idat_size)
    assert read_png(split) == read_png(whole)
