"""Sample images shipped with the package: two faces for a demo swap, and the result PNG."""

from __future__ import annotations

from importlib import resources
from typing import Final

from ..errors import ConfigurationError

__all__ = ["SAMPLE_NAMES", "sample_image"]

SAMPLE_NAMES: Final = ("source.png", "face.png", "result.png")
"""``source.png`` (a person), ``face.png`` (the face to put on them), ``result.png``."""


def sample_image(name: str) -> bytes:
    """The bytes of a sample image shipped with the package.

    Args:
        name: ``"source.png"`` (a person), ``"face.png"`` (a face to put on them) or
            ``"result.png"`` (what the emulator serves as a result).

    Returns:
        The PNG file's bytes.

    Raises:
        ConfigurationError: no sample has that name.
    """
    if name not in SAMPLE_NAMES:
        raise ConfigurationError(f"no sample image {name!r}; there are {', '.join(SAMPLE_NAMES)}")
    return resources.files(__package__).joinpath("samples", name).read_bytes()
