"""Sample images shipped with the package: two faces for a demo swap, and the result PNG."""

from __future__ import annotations

from importlib import resources
from typing import Final

__all__ = ["SAMPLE_NAMES", "sample_image"]

SAMPLE_NAMES: Final = ("source.png", "face.png", "result.png")
"""``source.png`` (a person), ``face.png`` (the face to put on them), ``result.png``."""


def sample_image(name: str) -> bytes:
    """The bytes of the shipped sample ``name``, one of :data:`SAMPLE_NAMES`."""
    if name not in SAMPLE_NAMES:
        raise ValueError(f"no sample image {name!r}; there are {', '.join(SAMPLE_NAMES)}")
    return resources.files(__package__).joinpath("samples", name).read_bytes()
