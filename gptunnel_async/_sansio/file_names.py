"""Which name a saved result file gets in a folder: pure rules, no I/O.

A result URL, its task id and the storage host's ``Content-Type`` are the server's
choice, so a name made from them must never reach outside the folder, hide a file,
read as an option, name a program or name a device: only plain media names are kept
(``[A-Za-z0-9][A-Za-z0-9._-]*`` with an image, audio or video extension), and none
that Windows reserves for a device (``NUL.png``, ``com1.mp3``: see
:func:`names_a_device`), on every system, since a folder of results is often
synced or copied to Windows. A URL without
one (Midjourney's ``https://gptunnel.ru/task/image/<id>?cache=100``) gives the task id
as the name, and the extension comes from the answer's media type when it is one of
:data:`MEDIA_TYPE_SUFFIXES` (``image/png`` gives ``.png``), else ``.bin``.

The table is the SDK's own rather than ``mimetypes``': that module reads the system's
``mime.types`` files (and Windows' registry), so ``audio/mpeg`` may give ``.mp3``,
``.mpga`` or ``.m2a`` from one machine to the next, and a file's name would too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Final

from yarl import URL

__all__ = [
    "MEDIA_SUFFIXES",
    "MEDIA_TYPE_SUFFIXES",
    "STAND_IN_SUFFIX",
    "id_file_stem",
    "names_a_device",
    "type_suffix",
    "url_media_name",
]

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UNSAFE_RUN: Final = re.compile(r"[^A-Za-z0-9._-]+")
_ID_STEM: Final = 64
"""The most characters of a task id kept in a file name made from it."""

_DEVICE: Final = re.compile(
    r"(?:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:\..*)?", re.IGNORECASE | re.DOTALL
)
"""A name Windows reads as a device, whatever its extension: the part before the first
dot is ``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0`` to ``COM9`` or ``LPT0`` to ``LPT9``
(Microsoft's "Naming Files, Paths, and Namespaces"; the superscript-digit forms hold a
character no kept name has)."""


def names_a_device(name: str) -> bool:
    """Whether Windows reads file name ``name`` as a device (``NUL.png``, ``com1.tar.gz``):
    writing there writes to the device (``NUL`` drops every byte), and no file is made."""
    return _DEVICE.fullmatch(name) is not None


MEDIA_SUFFIXES: Final = frozenset(
    {
        *(".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"),
        *(".heic", ".heif", ".mp3", ".wav", ".ogg", ".oga", ".opus", ".m4a", ".aac"),
        *(".flac", ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"),
    }
)
"""The extensions a file named after its URL may have: images, audio and video, so a
server cannot drop ``bot.py``, ``conftest.py`` or ``.bashrc`` into a folder."""

STAND_IN_SUFFIX: Final = ".bin"
"""The extension of a name made from a task id when the answer's media type gives none."""

MEDIA_TYPE_SUFFIXES: Final = MappingProxyType(
    {
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "image/jpg": ".jpg",  # not registered, but sent
        "image/webp": ".webp",
        "image/gif": ".gif",
        "image/avif": ".avif",
        "image/bmp": ".bmp",
        "image/tiff": ".tiff",
        "image/heic": ".heic",
        "image/heif": ".heif",
        "audio/mpeg": ".mp3",
        "audio/mp3": ".mp3",  # not registered, but sent
        "audio/wav": ".wav",
        "audio/wave": ".wav",
        "audio/x-wav": ".wav",
        "audio/vnd.wave": ".wav",
        "audio/ogg": ".ogg",
        "audio/opus": ".opus",
        "audio/flac": ".flac",
        "audio/aac": ".aac",
        "audio/mp4": ".m4a",
        "video/mp4": ".mp4",
        "video/webm": ".webm",
        "video/quicktime": ".mov",
    }
)
"""The media types (lower case, without parameters) whose extension a name made from a
task id takes; each extension is one of :data:`MEDIA_SUFFIXES`."""


def id_file_stem(task_id: str) -> str:
    """A file name stem made from ``task_id``, which the server chose: the id itself when
    it is a plain name (``[A-Za-z0-9][A-Za-z0-9._-]*``, at most 64 characters) that names
    no device (:func:`names_a_device`), else its plain characters and a short hash of the
    whole id (``x-3f2a9c1b0d``, ``task_nul-0c1d2e3f4a``), so that no id can name another
    folder (``../x``, ``/abs/x``) or a device (``NUL``), hold a control character, start
    with ``-`` or ``.``, or be mistaken for another id's name."""
    if len(task_id) <= _ID_STEM and _SAFE_NAME.fullmatch(task_id) and not names_a_device(task_id):
        return task_id
    plain = _UNSAFE_RUN.sub("_", task_id).lstrip("._-")[:_ID_STEM] or "task"
    if names_a_device(plain):  # "con.x-<hash>" would still be CON
        plain = f"task_{plain}"[:_ID_STEM]
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{plain}-{digest}"


def url_media_name(url: URL) -> str | None:
    """``url``'s last path segment if it is a plain media file name that names no device
    (:func:`names_a_device`), else ``None``."""
    name = PurePosixPath(url.path).name
    if (
        _SAFE_NAME.fullmatch(name)
        and PurePosixPath(name.lower()).suffix in MEDIA_SUFFIXES
        and not names_a_device(name)
    ):
        return name
    return None


def type_suffix(content_type: str | None) -> str | None:
    """The extension of the media type a ``Content-Type`` header names (``"image/png;
    q=1"`` gives ``".png"``), if it is one of :data:`MEDIA_TYPE_SUFFIXES`, in any case;
    ``None`` for any other type, a missing header or one that is not ASCII."""
    if content_type is None:
        return None
    media_type = content_type.partition(";")[0].strip(" \t")
    if not media_type.isascii():  # "K" (the Kelvin sign) would lower to "k"
        return None
    return MEDIA_TYPE_SUFFIXES.get(media_type.lower())
