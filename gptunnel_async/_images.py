"""Images for create calls: URLs and ``data:`` URIs pass through; bytes and files become
``data:<mime>;base64,...`` with the type sniffed from the content, never from a file name.
Media's ``images`` take public links only, as documented.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import os
import stat
from pathlib import Path
from typing import Final, Protocol, TypeAlias, TypeGuard, runtime_checkable

from ._checks import describe, describe_url, http_url
from ._png import PngError, read_png
from .errors import ConfigurationError

__all__ = [
    "MASK_TONES",
    "MAX_IMAGE_BYTES",
    "ImageInput",
    "ReadableBytes",
    "check_mask",
    "encode_image",
    "image_link",
    "is_file_object",
    "read_file_object",
    "read_image_file",
    "sniff_image_type",
]


@runtime_checkable
class ReadableBytes(Protocol):
    """A binary file object: ``io.BytesIO`` (aiogram's ``bot.download(photo,
    destination=buffer)`` fills one), a file opened ``"rb"``, anything whose
    ``read(size)`` returns bytes."""

    def read(self, size: int = -1, /) -> bytes:
        """Read from the current position.

        Args:
            size: the most bytes to read; ``-1`` for all.

        Returns:
            The bytes read, empty at the end.
        """


ImageInput: TypeAlias = str | bytes | os.PathLike[str] | ReadableBytes
"""An image for the API: an http(s) URL, a ``data:`` URI, raw bytes, a file path, or a
binary file object (read from its current position)."""


def is_file_object(value: object) -> TypeGuard[ReadableBytes]:
    """Whether ``value`` is taken for a binary file object: it has a callable ``read``,
    its own or handed on from a file it wraps (``tempfile.NamedTemporaryFile()``, a web
    framework's upload). Looked up as an attribute rather than by ``isinstance`` against
    :class:`ReadableBytes`: from Python 3.12 that check ignores what a class provides
    through ``__getattr__``, so such wrappers were taken on Python 3.11 and refused on
    3.12 and 3.13."""
    return callable(getattr(value, "read", None))


MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
"""10 MiB before base64: larger uploads belong at a URL the API can fetch."""

_LINKS: Final = ("http://", "https://")

_DATA_URI: Final = ("data:",)


def _is_link(what: str, value: str, schemes: tuple[str, ...]) -> bool:
    """Whether ``value`` begins with one of ``schemes``; ``ConfigurationError`` for such
    a link with spaces around it (pasted from a chat), which would otherwise be taken
    for a file's path, or reach the API as it is."""
    if not starts_with(value.strip(), schemes):
        return False
    if value != value.strip():
        raise ConfigurationError(
            f"{what} must not have spaces around it, got {describe_url(value)}"
        )
    return True


def _shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` for an error, as given (``Path()`` would show ``"http//x"`` as
    ``'http/x'``); one that is a link taken for a path (another scheme, ``ftp://``, or
    none, ``user:password@host/a.png``) is shown with its user and password as ``***``,
    as a refused link is."""
    text = os.fspath(path)
    if not isinstance(text, str):
        return describe(text)
    first = text.split("/", 1)[0]
    link = "://" in text or (":" in first.partition("@")[0] and "@" in first)
    return describe_url(text) if link else describe(text)


def _scheme_in_lower_case(link: str) -> str:
    """``link`` with its scheme in lower case, as servers expect it (``HTTPS://`` is
    valid, but some refuse it: the emulator did)."""
    scheme, colon, rest = link.partition(":")
    return f"{scheme.lower()}{colon}{rest}"


def starts_with(text: str, schemes: tuple[str, ...]) -> bool:
    """Whether ``text`` begins with one of ``schemes`` (``"https://"``), in any case:
    a URL's scheme is case-insensitive (RFC 3986), so ``HTTPS://`` is a link too."""
    return text[:10].lower().startswith(schemes)


def sniff_image_type(data: bytes) -> str:
    """The MIME type of PNG, JPEG or WEBP bytes; ``ConfigurationError`` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ConfigurationError("the image is not a PNG, JPEG or WEBP file")


def _encoded(data: bytes, what: str, empty: str = "") -> str | ConfigurationError:
    """``data`` as a ``data:`` URI, or the error refusing it, returned rather than raised:
    the caller raises it from a frame that does not hold the bytes (a file the SDK was
    told to read may be anything, e.g. ``/etc/shadow``, and error reporters capture the
    locals of every frame of a traceback)."""
    if not data:
        return ConfigurationError(f"{what} is empty (0 bytes){empty}")
    if len(data) > MAX_IMAGE_BYTES:
        return ConfigurationError(
            f"{what} is over the {MAX_IMAGE_BYTES} byte limit; "
            "upload it somewhere and pass its URL instead"
        )
    try:
        mime = sniff_image_type(data)
    except ConfigurationError:
        return ConfigurationError(f"{what} is not a PNG, JPEG or WEBP file")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _raised(outcome: str | ConfigurationError) -> str:
    if isinstance(outcome, ConfigurationError):
        raise outcome
    return outcome


def read_image_file(path: str | os.PathLike[str], what: str = "image") -> bytes:
    """At most ``MAX_IMAGE_BYTES + 1`` bytes of the regular file at ``path``: enough to
    tell a file over the limit without reading it all.

    Only a regular file is read: a FIFO, a device (``/dev/zero``, a terminal), a socket
    or a folder is refused before any read, and opening never blocks (a FIFO with no
    writer would hold a thread for good). Blocking: run it in a thread.

    Raises:
        ConfigurationError: the file cannot be opened or read, or is not a regular file.
    """
    shown = _shown_path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the {what} file {shown}: {_unopened(path, exc)}"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigurationError(f"the {what} file {shown} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} file {shown}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def read_file_object(value: ReadableBytes, what: str = "image") -> bytes:
    """At most ``MAX_IMAGE_BYTES + 1`` bytes of a binary file object, from its current
    position. Blocking for a real file: run it in a thread.

    Raises:
        ConfigurationError: reading fails, or gives text rather than bytes (a file
            opened ``"r"`` instead of ``"rb"``).
    """
    try:
        data = value.read(MAX_IMAGE_BYTES + 1)
    except UnicodeDecodeError:  # a picture read through a text file's decoder
        raise ConfigurationError(
            f'cannot read the {what}: it is a text file object; open the file with "rb"'
        ) from None
    except (OSError, ValueError) as exc:  # closed, or not open for reading
        raise ConfigurationError(f"cannot read the {what}: {_reason(exc)}") from None
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ConfigurationError(
            f'the {what}\'s read() gave {type(data).__name__}, not bytes: open the file with "rb"'
        )
    return bytes(data)


_BASE64_PICTURES: Final = ("iVBORw0KGgo", "/9j/", "UklGR")
"""How PNG, JPEG and WEBP files begin once base64-encoded."""


def _unopened(path: str | os.PathLike[str], exc: OSError | ValueError) -> str:
    """Why ``os.open(path)`` failed, and, for text that was most likely not meant as a
    path, what to pass instead: text that is no link is taken for a file's path, so a
    link without its scheme (``example.com/me.jpg``), a chat's file id, bare base64 or
    a picture's bytes decoded as text each fail here."""
    if isinstance(exc, ValueError):  # os.open refuses a path with a NUL in it
        return "it holds a NUL character, so it is no file's path (pass a picture's bytes as bytes)"
    reason = _reason(exc)
    # Any path object: pathlib's, or another library's (anyio's and trio's Path) alike.
    if not isinstance(path, str) and starts_with(os.fspath(path), ("http:/", "https:/")):
        return f"{reason} (a link given as a Path, which turned its // into /: pass it as a str)"
    if not isinstance(path, str):
        return reason
    if path.startswith(_BASE64_PICTURES):
        return (
            f"{reason} (bare base64 is taken for a file path: pass it as a "
            "data:image/png;base64,... URI, or pass the decoded bytes)"
        )
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENAMETOOLONG:
        return f"{reason} (text that is no http(s) link or data: URI is a file path)"
    return reason


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__


async def encode_image(value: ImageInput, name: str = "image") -> str:
    """``value`` as the string the API takes in ``sourceImage``/``faceImage``/``images``.
    ``name`` is the argument it came in, named in each refusal (``source_image``), so
    that a call taking two images says which one is at fault.

    A ``str`` that is not an http(s) URL or a ``data:`` URI is a file path: pass text a
    user typed only once you know it is a link. A file is read only if it is a regular
    file, at most ``MAX_IMAGE_BYTES + 1`` bytes of it.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return _raised(_encoded(bytes(value), f"the {name}"))
    if is_file_object(value):
        # No local holds the bytes: a refusal is raised from this frame (see _encoded).
        return _raised(
            _encoded(
                await asyncio.to_thread(read_file_object, value, name),
                f"the {name}",
                empty=": a file object is read from its current position; seek(0) it first",
            )
        )
    if isinstance(value, str):
        if not value.strip():
            raise ConfigurationError(f"the {name} must not be an empty string")
        if _is_link(f"the {name} link", value, _LINKS):
            http_url(f"the {name} link", value)  # "http://" or a broken host: no paid task
            return _scheme_in_lower_case(value)
        if _is_link(f"the {name} data: URI", value, _DATA_URI):
            return _raised(_data_uri_image(value, name))
    if not isinstance(value, str | os.PathLike):
        raise ConfigurationError(
            f"the {name} must be a URL, a data: URI, bytes, a path or a binary file object, "
            f"got {type(value).__name__}"
        )
    shown = f"the {name} file {_shown_path(value)}"
    return _raised(_encoded(await asyncio.to_thread(read_image_file, value, name), shown))


_DATA_URI_TEXT: Final = 4 * MAX_IMAGE_BYTES // 3 + 1024
"""The longest ``data:`` URI looked at: base64 of the largest image, and room for its
type; a longer one is over the limit without decoding it."""


def _data_uri_image(value: str, name: str) -> str | ConfigurationError:
    """A ``data:`` URI given as an image, checked as bytes are (base64 of a PNG, JPEG or
    WEBP file, at most ``MAX_IMAGE_BYTES``) and sent as they are, its type sniffed; or
    the error refusing it, returned (see ``_encoded``)."""
    what = f"the {name} data: URI"
    header, comma, data = value.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        return ConfigurationError(
            f"{what} must be base64 (data:image/png;base64,...), got {describe(value[:40])}"
        )
    if len(value) > _DATA_URI_TEXT:
        return ConfigurationError(
            f"{what} is over the {MAX_IMAGE_BYTES} byte limit; "
            "upload it somewhere and pass its URL instead"
        )
    try:
        decoded = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return ConfigurationError(f"{what} is not valid base64")
    return _encoded(decoded, what)


def image_link(value: object, what: str) -> str:
    """``value`` if it is a public http(s) link, as ``/media``'s ``images`` must be.

    The API fetches the images itself and takes no uploads: bytes, files, ``data:`` URIs
    and bare base64 are refused here, before a paid request, with what to do instead.
    """
    if isinstance(value, str) and _is_link(what, value, _LINKS):
        http_url(what, value)
        return _scheme_in_lower_case(value)
    if isinstance(value, str) and starts_with(value, _DATA_URI):
        kind = "a data: URI"
    elif isinstance(value, bytes | bytearray | memoryview):
        kind = "bytes"
    elif isinstance(value, os.PathLike | str):
        kind = f"{_shown_path(value)}, not a link"
    else:
        kind = f"a {type(value).__name__}"
    raise ConfigurationError(
        f"{what} is {kind}: media images must be public http(s) links, which the API "
        "fetches itself (it takes no uploads, data: URIs or base64); upload the image "
        "somewhere public and pass its URL"
    )


MASK_TONES: Final = frozenset({(0, 0, 0), (255, 255, 255)})
"""The colours an inpaint mask may use: black and white, as documented."""


def _mask_bytes(value: ImageInput) -> bytes:
    """The PNG bytes of a mask given as bytes, a path, a ``data:`` URI or base64 text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if is_file_object(value):
        return read_file_object(value, "mask")
    if isinstance(value, str) and starts_with(value.strip(), _LINKS):
        raise ConfigurationError(
            "mask must be the PNG itself (bytes, a path or base64), not a link: "
            "the API takes it as base64"
        )
    if not isinstance(value, str | os.PathLike):
        raise ConfigurationError(
            "mask must be PNG bytes, a path, a binary file object or base64 text, got "
            f"{type(value).__name__}"
        )
    if isinstance(value, os.PathLike) or _is_file(value):
        return read_image_file(value, "mask")
    text = value.strip()
    text = text.partition(",")[2] if starts_with(text, _DATA_URI) else text
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("mask is neither an existing file nor base64 text") from None


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # base64 text too long for a file name, or with a NUL
        return False


def check_mask(value: ImageInput, size: tuple[int, int] | None = None) -> str:
    """An inpaint mask as the base64 the API takes, once it passes what can be checked
    here: a PNG, black and white only, and (when ``size`` is given) the parent's size.

    ``size`` is ``(width, height)`` in pixels, compared as soon as the PNG's header is
    read: a mask of another size is refused before any pixel is inflated. Colours are
    read a row at a time in C, so the check costs little whatever the PNG; interlaced
    PNGs, and PNGs over ``_png.MAX_CHECKED_BYTES`` of pixel data or
    ``_png.MAX_CHECKED_ROWS`` rows, are checked for size only. Blocking (it reads the
    file and the pixels): run it in a thread.

    Raises:
        ConfigurationError: the mask cannot be read, is over ``MAX_IMAGE_BYTES``, is not
            a readable PNG (a damaged one, one whose bit depth its colour type does not
            allow, or one whose pixel data inflates past what its header announces), is
            not ``size``, or has other colours.
    """
    return _raised(_checked_mask(_mask_bytes(value), size))


def _checked_mask(data: bytes, size: tuple[int, int] | None) -> str | ConfigurationError:
    """The base64 of mask ``data``, or the error refusing it (returned: see ``_encoded``)."""
    if len(data) > MAX_IMAGE_BYTES:
        return ConfigurationError(f"mask is over the {MAX_IMAGE_BYTES} byte limit")
    try:
        image = read_png(data, size)
    except PngError as exc:
        return ConfigurationError(f"mask must be a black-and-white PNG: {exc}")
    if size is not None and (image.width, image.height) != tuple(size):
        return ConfigurationError(
            f"mask is {image.width}x{image.height} pixels, but the image it masks is "
            f"{size[0]}x{size[1]}: the docs require the same size"
        )
    if image.colours is not None and not image.colours <= MASK_TONES:
        others = len(image.colours - MASK_TONES)
        return ConfigurationError(
            "mask must be black and white only (the area to redraw in white); it has "
            f"{others} other colour{'s' if others > 1 else ''}, e.g. grey edges from "
            "anti-aliasing"
        )
    return base64.b64encode(data).decode("ascii")
