"""The emulator's hand-written PNG reading and writing, and the demo's picture."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import ConfigurationError
from gptunnel_async._images import sniff_image_type
from gptunnel_async.testing import SAMPLE_NAMES, sample_image
from gptunnel_async.testing._pictures import face_swap_picture, read_png, write_png

pixel = st.tuples(*[st.integers(0, 255)] * 3)


@given(
    st.integers(1, 6).flatmap(
        lambda w: st.lists(st.lists(pixel, min_size=w, max_size=w), min_size=1, max_size=6)
    )
)
def test_what_is_written_reads_back_the_same(pixels: list[list[tuple[int, int, int]]]) -> None:
    assert read_png(write_png(pixels)) == pixels


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_samples_read_and_write_back_to_the_same_pixels(name: str) -> None:
    pixels = read_png(sample_image(name))
    assert (len(pixels), len(pixels[0])) == (32, 32)
    assert read_png(write_png(pixels)) == pixels


def test_anything_else_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a PNG"):
        read_png(b"GIF89a")


def test_the_face_swap_picture_is_a_png_of_three_samples_and_two_signs() -> None:
    picture = face_swap_picture()
    assert sniff_image_type(picture) == "image/png"
    pixels = read_png(picture)
    assert (len(pixels), len(pixels[0])) == (8 + 96 + 8, 8 + 5 * (96 + 8))
