"""Saving a result file: stream it to a temporary file beside ``dest``, then rename.

Result URLs live on an object-storage host and expire after about three days, so users
save them. A download either leaves a complete file at ``dest`` or leaves ``dest`` and
its folder exactly as they were.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Final

import aiohttp
from yarl import URL

from ._transport import Transport
from .errors import ConfigurationError, DownloadError

__all__ = ["DEFAULT_MAX_BYTES", "download", "resolve_target", "validate_url"]

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
"""256 MiB: far above any image or clip the API returns, far below filling a disk."""

_MAX_REDIRECTS: Final = 10
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_url(url: str | URL) -> URL:
    """``url`` parsed, if it is an absolute http(s) URL; ``ConfigurationError`` otherwise."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"only http(s) URLs can be downloaded, got {parsed.scheme!r}")
    return parsed


def resolve_target(dest: str | os.PathLike[str], url: URL, fallback_name: str) -> Path:
    """The file to write: ``dest`` itself, or a file named after the URL inside folder ``dest``.

    The folder must already exist: a download never creates or changes anything but
    the one file it writes.
    """
    target = Path(dest)
    if target.is_dir():
        name = PurePosixPath(url.path).name
        target = target / (name if _SAFE_NAME.fullmatch(name) else fallback_name)
    if not target.parent.is_dir():
        raise ConfigurationError(f"the folder {str(target.parent)!r} does not exist")
    return target


def check_destination(dest: str | os.PathLike[str]) -> None:
    """Check what can be checked before a download starts: the folder ``dest`` is (or is
    in) exists and takes new files, and the file name is one the folder can hold.

    Raises:
        ConfigurationError: the folder is missing or cannot be written to, or the name
            is empty, holds a NUL or is too long.
    """
    target = Path(dest)
    folder = target if _is_dir(target) else target.parent
    if not _is_dir(folder):
        raise ConfigurationError(f"the folder {str(folder)!r} does not exist")
    if folder is not target:
        _check_name(folder, target.name)
    try:  # the download writes a temporary file there first: try exactly that
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"cannot write to the folder {str(folder)!r}: {reason}") from None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long to look up (before Python 3.12, is_dir raises)
        return False


def _check_name(folder: Path, name: str) -> None:
    if name in ("", ".", "..") or "\0" in name:
        raise ConfigurationError(f"{name!r} is not a file name")
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not POSIX, or the system will not say
        longest = 255
    if len(os.fsencode(name)) > longest:
        raise ConfigurationError(f"the file name is over {longest} bytes: {name[:40]!r}...")


async def download(transport: Transport, url: URL, target: Path, *, max_bytes: int) -> Path:
    """Fetch ``url`` into ``target`` atomically, retrying transient failures."""
    what = f"GET {url.host}{url.path}"
    result: Path = await transport.retrying(what)(_attempt, transport, url, target, max_bytes)
    return result


async def _attempt(transport: Transport, url: URL, target: Path, max_bytes: int) -> Path:
    """One try: stream into a temporary file beside ``target``, then rename it into place.

    The rename is the last step and nothing is awaited after it, so a failure or a
    cancellation at any earlier point leaves ``target`` as it was.
    """
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        os.chmod(temporary, _mode_for(target))
        # Writes stay on the event loop: 64 KiB chunks into the page cache take
        # microseconds, and a thread hop per chunk would make cancellation race the
        # write it interrupts.
        with os.fdopen(fd, "wb") as file:
            await _stream(transport, url, file, max_bytes)
        os.replace(temporary, target)
    except OSError as exc:
        _remove(temporary)
        raise DownloadError(f"could not write {str(target)!r}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove(temporary)
        raise
    return target


async def _stream(transport: Transport, url: URL, file: BinaryIO, max_bytes: int) -> None:
    """Write the body of ``url`` to ``file``, following redirects only to http(s) (the key
    only on the API origin); every wire failure becomes a typed error."""

    async def save_or_redirect(response: aiohttp.ClientResponse) -> URL | None:
        if response.status in _REDIRECT_STATUSES:
            return _redirect_target(url, response)
        if response.status >= 300:
            await transport.raise_for_status(response)
        await _save(transport, response, file, max_bytes)
        return None

    for _ in range(_MAX_REDIRECTS + 1):
        redirect = await transport.exchange(transport.requests.fetch(url), save_or_redirect)
        if redirect is None:
            return
        url = redirect
    raise DownloadError(f"more than {_MAX_REDIRECTS} redirects")


def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
    """Where a redirect points, if it is an http(s) URL; ``DownloadError`` otherwise."""
    location = response.headers.get("Location")
    if not location:
        raise DownloadError(f"a {response.status} redirect from {url.host} had no Location")
    try:
        target = url.join(URL(location))
    except ValueError as exc:
        raise DownloadError(f"a {response.status} redirect to an unusable URL") from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise DownloadError(f"refusing a redirect to a {target.scheme!r} URL")
    return target


async def _save(
    transport: Transport, response: aiohttp.ClientResponse, file: BinaryIO, max_bytes: int
) -> None:
    """Copy the body into ``file``, refusing more than ``max_bytes`` (as decoded)."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise DownloadError(
            f"the result is {response.content_length} bytes, over max_bytes={max_bytes}"
        )
    written = 0
    async for chunk in transport.chunks(response, max_bytes):
        written += len(chunk)
        if written > max_bytes:
            raise DownloadError(f"the result is over max_bytes={max_bytes}")
        file.write(chunk)


def _mode_for(target: Path) -> int:
    """The permissions ``target`` gets: those of the file it replaces, else what a plain
    ``open()`` would give (0o666 less the umask) — not the temporary file's private 0o600."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
