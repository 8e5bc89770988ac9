"""Saving a result file: stream it to a temporary file beside ``dest``, then rename.

Result URLs expire (each family's ``result_lifetime``: face swaps' after 3 days, suno's
after 48 hours, some image models' after about a day), so users save them. A download
either leaves a complete file at ``dest`` or leaves ``dest`` and its folder exactly as
they were.

A file the caller named is replaced. A file named after the URL (``dest`` a folder) is
the server's choice, so it never replaces anything: it keeps only media names (see
``_sansio.file_names``, which also gives a name made from the task id the extension of
the answer's media type), and when that name is taken it gets a ``-1``, ``-2``...
suffix, linked into place without replacing (no-clobber).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple

import aiohttp
from yarl import URL

from ._checks import describe, describe_url, http_url
from ._destinations import Destinations
from ._sansio.file_names import (
    MEDIA_SUFFIXES,
    STAND_IN_SUFFIX,
    id_file_stem,
    type_suffix,
    url_media_name,
)
from ._sansio.requests import content_codings
from ._sansio.responses import TASK_FAMILIES
from ._sansio.result_bodies import SNIFF_BYTES, media_start, refused_start, refused_type
from ._sansio.text import shorten
from ._transport import Transport
from .errors import ConfigurationError, DownloadError, GPTunnelError
from .models import MediaTask, Task

__all__ = [
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "Target",
    "download",
    "folder_targets",
    "resolve_target",
    "result_files",
    "result_url",
]

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
"""256 MiB: far above any image or clip the API returns, far below filling a disk."""

DEFAULT_DOWNLOAD_TIMEOUT: Final = 300.0
"""Five minutes for a whole download, redirects and retries included: a result image
of a few megabytes takes seconds, and even ``max_bytes`` at 1 MB/s fits; a host that
drips bytes cannot hold a download longer."""

_MAX_REDIRECTS: Final = 10
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_WHOLE_FILE: Final = 200
"""The one status whose body is the whole file; no download asks for a range."""
_MAX_SUFFIXES: Final = 1000


class Target(NamedTuple):
    """Where a download goes: ``path``; whether an existing file there may be replaced
    (``False`` when the name came from the URL, not from the caller); and whether the
    name's ``.bin`` only stands in for an extension, which the media type of the answer
    then gives if it can (a name made from the task id: see ``_sansio.file_names``)."""

    path: Path
    replace: bool
    typed_by_answer: bool = False


def result_url(task_or_url: object, clip: int | None = None) -> tuple[URL, str]:
    """The URL to fetch (file number ``clip`` of a task with several) and a file name to
    fall back on.

    A done task's URL came from the server: if it is not an http(s) URL, that is a
    ``DownloadError``. A URL the caller gave that is not one, or anything else given as
    ``task_or_url``, is a ``ConfigurationError``.
    """
    if isinstance(task_or_url, Task | MediaTask):
        found = result_file(task_or_url, clip)
        stem = id_file_stem(task_or_url.id)
        name = stem if clip is None else f"{stem}-{clip}"
        return server_url(found), f"{name}{STAND_IN_SUFFIX}"
    if not isinstance(task_or_url, str | URL):
        raise ConfigurationError(
            f"task_or_url must be a done Task or MediaTask, or an http(s) URL, got "
            f"{describe_url(task_or_url)}"
        )
    if clip is not None:
        raise ConfigurationError("clip= picks a file of a task; a URL is one file")
    if isinstance(task_or_url, str) and "://" not in task_or_url:
        raise ConfigurationError(
            f"task_or_url must be a done Task or an http(s) URL, got {describe_url(task_or_url)}: "
            "for a task id, pass the Task that wait_for_result(task_id) returns"
        )
    return fetchable_url("the URL to download", task_or_url), f"result{STAND_IN_SUFFIX}"


def server_url(url: str) -> URL:
    """A result URL from the server's answer, parsed; ``DownloadError`` if it is unusable."""
    return fetchable_url("the result URL", url, error=DownloadError)


def fetchable_url(
    name: str, value: object, *, error: type[GPTunnelError] = ConfigurationError
) -> URL:
    """``value`` as :func:`http_url` reads it, and with a user name and password (if it
    carries them) that HTTP Basic can carry, as aiohttp sends them: not a ``:`` in the
    user name, nothing outside Latin-1. aiohttp refuses others with a bare
    ``ValueError`` or ``UnicodeEncodeError`` from inside the request; this is ``error``,
    before anything is sent, not quoting them. Every URL a download fetches passes here:
    the caller's, a task's result and each redirect's target."""
    url = http_url(name, value, error=error)
    user = url.user or ""
    try:
        f"{user}:{url.password or ''}".encode("latin-1")
    except UnicodeEncodeError:
        user = ":"  # as unusable
    if ":" in user:
        raise error(
            f"{name} carries a user name or password that HTTP cannot send (a ':' in the "
            f"user name, or a character outside Latin-1), got {describe_url(value)}"
        )
    return url


_FAMILY_OF_TYPE: Final = {
    "@FaceSwap": "faceswap",
    "@BGRemover": "bgremover",
    **dict.fromkeys(
        ("imagine", "upsample", "variation", "inpaint", "outpaint", "pan", "upscale", "reroll"),
        "midjourney",
    ),
}
"""The family whose ``wait_for_result`` reads a task of each ``type``: each family reads
only its own tasks, so the plain ``client.wait_for_result`` (face swaps') would answer
another's "not found"."""


def _wait_call(task: Task | MediaTask) -> str:
    """The call that waits for ``task``, for an error's text: its family's when its
    ``type`` tells it, else the families to choose from."""
    family = "media" if isinstance(task, MediaTask) else _FAMILY_OF_TYPE.get(task.type or "")
    if family is None:
        *others, last = (f"client.{name}" for name in TASK_FAMILIES)
        return f"its family's wait_for_result: {', '.join(others)} or {last}"
    return f"task = await client.{family}.wait_for_result({shorten(task.id, 80)!r})"


def result_files(task: Task | MediaTask) -> tuple[str, ...]:
    """Every result file of a done task.

    Raises:
        ConfigurationError: the task is not done (the caller's mistake).
        DownloadError: the server says it is done but gave no result URL (the
            server's answer, not the caller's arguments, is at fault).
    """
    found = (task.result,) if isinstance(task, Task) else task.urls
    files = tuple(url for url in found if url)
    if not task.is_done:
        raise ConfigurationError(
            f"task {shorten(task.id, 80)} has no result to download "
            f"(status {shorten(task.status, 40)!r})"
            + (
                f": it failed: {shorten(task.error or 'no error message given', 300)}"
                if task.is_failed
                else f": wait for it first ({_wait_call(task)})"
            )
        )
    if not files:
        raise DownloadError(
            f"task {shorten(task.id, 80)} is done but the server gave no result to download"
        )
    return files


MAX_RESULT_FILES: Final = 100
"""The most files one task's results are saved as: GPTunnel's models give one to a few
(suno two clips); a server's answer may list some 50,000 within the 4 MiB an answer
may take, each up to ``max_bytes``."""


def files_to_save(task: Task | MediaTask) -> tuple[str, ...]:
    """Every result file of a done task, to save all of them.

    Raises:
        ConfigurationError: as :func:`result_files`.
        DownloadError: as :func:`result_files`, or the task lists more than
            :data:`MAX_RESULT_FILES` files.
    """
    files = result_files(task)
    if len(files) > MAX_RESULT_FILES:
        raise DownloadError(
            f"task {shorten(task.id, 80)} lists {len(files)} result files, more than the "
            f"{MAX_RESULT_FILES} saved at once (GPTunnel's models give one to a few); "
            "download_result(task, dest, clip=n) saves one"
        )
    return files


def result_file(task: Task | MediaTask, clip: int | None) -> str:
    """The result file of a done task: its only one, or number ``clip`` of several."""
    files = result_files(task)
    if clip is None:
        if len(files) > 1:
            raise ConfigurationError(
                f"task {shorten(task.id, 80)} has {len(files)} result files (music clips): "
                "pass clip=N for one of them, or save them all with download_results"
            )
        return files[0]
    if isinstance(clip, bool) or not isinstance(clip, int) or not 0 <= clip < len(files):
        raise ConfigurationError(
            f"clip must be an int from 0 to {len(files) - 1} for task {shorten(task.id, 80)}, "
            f"got {describe(clip)}"
        )
    return files[clip]


def _missing_folder(folder: Path) -> ConfigurationError:
    """The error for a ``dest`` whose folder is missing: the SDK creates no folders (a
    mistyped path would otherwise grow a tree), so the message says to make it."""
    return ConfigurationError(
        f"the folder {describe(str(folder))} does not exist: create it first"
        " (Path(...).mkdir(parents=True)); downloads make no folders"
    )


def resolve_target(dest: object, url: URL, fallback_name: str) -> Target:
    """The file to write: ``dest`` itself (replaced if it exists), or a new file inside
    folder ``dest`` (never replacing one) named after the URL when it ends in a media
    name, else ``fallback_name``, whose ``.bin`` the answer's media type may then turn
    into a media extension (see :class:`Target`).

    The folder must already exist: a download never creates or changes anything but
    the one file it writes. A ``dest`` that is not a path, or is empty, is a
    ``ConfigurationError``; a folder that cannot even be looked at, a ``DownloadError``.
    """
    if not isinstance(dest, str | os.PathLike):
        raise ConfigurationError(f"dest must be a path, got {describe(dest)}")
    _refuse_empty(dest)
    try:
        if "\x00" in os.fsdecode(dest):
            raise ValueError("a NUL character")  # is_dir() would say False, not why
        target = _target_of(Path(dest), url, fallback_name)
        folder = target.path if _names_a_folder(dest) else target.path.parent
        folder_exists = not target.replace or folder.is_dir()
    except (TypeError, ValueError) as exc:  # bytes paths, NUL characters
        raise ConfigurationError(f"dest is not a usable path: {describe(dest)}") from exc
    except OSError as exc:
        raise DownloadError(f"cannot look at {describe(str(dest))}: {exc.strerror or exc}") from exc
    if not folder_exists:
        raise _missing_folder(folder)
    if target.replace:
        refuse_special(target.path)
    return target


def _target_of(named: Path, url: URL, fallback_name: str) -> Target:
    """A new file in folder ``named``, or ``named`` itself if it is no folder."""
    if named.is_dir():
        return _in_folder(named, url, fallback_name)
    return Target(named, replace=True)


def _in_folder(folder: Path, url: URL, fallback_name: str) -> Target:
    """A new file in ``folder``: the URL's media name, else ``fallback_name`` with its
    extension left to the answer's media type."""
    from_url = url_media_name(url)
    if from_url is not None:
        return Target(folder / from_url, replace=False)
    return Target(folder / fallback_name, replace=False, typed_by_answer=True)


def _refuse_empty(
    dest: str | os.PathLike[str], what: str = "dest", wanted: str = "a file or an existing folder"
) -> None:
    """``ConfigurationError`` if ``dest`` is empty. ``Path("")`` is the current folder, so
    an unset variable (``os.environ.get("OUT", "")``) would write there unasked;
    ``what`` names the argument in the error, ``wanted`` what it should name."""
    with contextlib.suppress(TypeError):  # a broken __fspath__: the caller's checks say it
        if os.fspath(dest) in ("", b""):
            raise ConfigurationError(f"{what} is empty: name {wanted}")


def _names_a_folder(dest: str | os.PathLike[str]) -> bool:
    """A trailing separator means a folder: ``missing/`` must not become a file ``missing``."""
    return os.fspath(dest).endswith(("/", os.sep))


def check_destination(dest: str | os.PathLike[str], what: str = "dest") -> None:
    """Check what can be checked before a download starts: ``dest`` is not empty, the
    folder it is (or is in) exists and takes new files, and the file name is one the
    folder can hold; ``what`` names ``dest`` in the errors (the command line's
    ``--save``).

    Raises:
        ConfigurationError: ``dest`` is empty, the folder is missing or cannot be
            written to, or the name is empty, holds a NUL or is too long.
    """
    _refuse_empty(dest, what)
    target = Path(dest)
    folder = target if _is_dir(target) or _names_a_folder(dest) else target.parent
    if not _is_dir(folder):
        raise _missing_folder(folder)
    if folder is not target:
        _check_name(folder, target.name)
        refuse_special(target, what)
    try:  # the download writes a temporary file there first: try exactly that
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(
            f"cannot write to the folder {describe(str(folder))}: {reason}"
        ) from None


def refuse_special(path: Path, what: str = "dest") -> None:
    """``ConfigurationError`` if ``path`` is, or links to, something other than a regular
    file: a device (``/dev/null``), a FIFO, a socket (``/dev/stdout`` links to one). A
    named file is replaced by renaming the download onto it, which would put a regular
    file in the place of the device itself (for root, ``/dev/null`` of every program).
    A path that is missing or cannot be looked at is left to the other checks."""
    try:
        mode = path.stat().st_mode  # through links: /dev/stdout is the pipe it names
    except (OSError, ValueError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ConfigurationError(
            f"{what} {describe(str(path))} is a device, pipe or socket, not a file: saving "
            "would replace it with the download; name a regular file or a folder"
        )


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


def folder_targets(folder: object, urls: list[URL], task_id: str) -> list[Target]:
    """One new file in the existing ``folder`` per URL, named after it; where the URL's
    name is unusable, ``<stem>.bin`` for a task's only file as :func:`resolve_target`
    names it, and ``<stem>-<n>.bin`` for file ``n`` of several (the stem from
    :func:`id_file_stem`; the ``.bin`` typed by the answer, see :class:`Target`); where
    two URLs share a name, ``<stem>-<n><suffix>``. None replaces a file."""
    if isinstance(folder, str | os.PathLike):
        _refuse_empty(folder, "folder", "an existing folder")
    if not isinstance(folder, str | os.PathLike) or not os.path.isdir(folder):
        raise ConfigurationError(f"folder must be an existing folder, got {describe(folder)}")
    name = id_file_stem(task_id)
    numbered = len(urls) > 1
    found = [
        resolve_target(folder, url, (f"{name}-{number}" if numbered else name) + STAND_IN_SUFFIX)
        for number, url in enumerate(urls)
    ]
    paths = [target.path for target in found]
    return [
        target._replace(path=target.path.with_name(f"{name}-{number}{target.path.suffix}"))
        if paths.count(target.path) > 1
        else target
        for number, target in enumerate(found)
    ]


async def download(
    transport: Transport,
    url: URL,
    target: Target,
    *,
    max_bytes: int,
    timeout: float | None,
    destinations: Destinations,
    of_task: bool = False,
) -> Path:
    """Fetch ``url`` into ``target`` atomically, retrying transient failures, all within
    ``timeout`` seconds (``None``: no deadline), reaching only hosts ``destinations``
    allows; the path written (another name than ``target.path`` when that was taken
    and may not be replaced).

    The file must be an image, audio or video (a ``DownloadError`` for a document,
    see ``_sansio.result_bodies``) when it is a task's result (``of_task``: every
    GPTunnel model makes media), the URL's name or ``target``'s has a media extension,
    or the answer's ``Content-Type`` says it is one."""
    what = transport.shown(f"GET {shorten(url.host or '', 80)}{shorten(url.path, 120)}")
    media = (
        of_task or url_media_name(url) is not None or target.path.suffix.lower() in MEDIA_SUFFIXES
    )
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline, destinations.session() as session:
            fetch = _Fetch(transport, session, destinations.check_literal, media=media)
            result = await transport.retried(
                what, functools.partial(_attempt, fetch, url, target, max_bytes)
            )
    except TimeoutError:
        if not deadline.expired():
            raise
        raise DownloadError(f"{what} did not finish within {timeout:g}s") from None
    return result


class _Fetch:
    """How one download sends: through ``transport``, on ``session`` (``None``: the
    client's own), each hop's URL first passed to ``check``; and whether the file it
    saves must be an image, audio or video (``media``)."""

    __slots__ = ("check", "media", "session", "transport")

    def __init__(
        self,
        transport: Transport,
        session: aiohttp.ClientSession | None,
        check: Callable[[URL], None],
        *,
        media: bool,
    ) -> None:
        self.transport = transport
        self.session = session
        self.check = check
        self.media = media


async def _attempt(fetch: _Fetch, url: URL, target: Target, max_bytes: int) -> Path:
    """One try: stream into a temporary file beside ``target``, then move it into place.

    The move is the last step and nothing is awaited after it, so a failure or a
    cancellation at any earlier point leaves the folder as it was. The bytes are on the
    disk before the move (:func:`_sync`): after a power cut, the name holds the whole
    file or what it held before, never an empty or partial file under the final name.
    Every failure of the file system (a folder it may not write to, a full disk, a disk
    that reports an error on sync) is a ``DownloadError``.
    """
    path = target.path
    file, temporary = _create_temporary(path)
    try:
        # Writes stay on the event loop: 64 KiB chunks into the page cache take
        # microseconds, and a thread hop per chunk would make cancellation race the
        # write it interrupts.
        with file:
            if target.replace:
                _keep_mode(file.fileno(), path)
            content_type = await _stream(fetch, url, file, max_bytes)
            await _sync(file)
        if target.replace:
            os.replace(temporary, path)
            return path
        return _link_new(temporary, _typed(target, content_type))
    except OSError as exc:
        raise _file_error(path, exc) from None
    finally:
        _remove(temporary)


_CANNOT_SYNC: Final = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})
"""``fsync`` errors of a file system that cannot sync a file at all (some FUSE and
network ones): nothing more can be done there, so the download goes on as before."""


async def _sync(file: BinaryIO) -> None:
    """Write ``file``'s bytes through to the disk (``fsync``), so that the rename after
    it never makes the final name point at data a power cut would lose; ``OSError`` if
    the disk reports a failure (an ``EIO``: the bytes may be lost).

    The sync runs in a thread: for a large file on a slow disk it takes long enough to
    stall every other request on the event loop. A cancellation waits for it to end
    (the file must stay open while the thread syncs it), then goes on."""
    file.flush()
    syncing = asyncio.get_running_loop().run_in_executor(None, _fsync, file.fileno())
    try:
        await asyncio.shield(syncing)
    except asyncio.CancelledError:
        while not syncing.done():  # moments: the sync is under way
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(syncing)
        raise


def _fsync(fd: int) -> None:
    """``os.fsync(fd)``, passing over a file system that cannot sync a file at all."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _CANNOT_SYNC:
            raise


def _typed(target: Target, content_type: str | None) -> Path:
    """``target``'s path, its stand-in ``.bin`` (if it is one) made the extension of the
    media type the answer's ``content_type`` names, when that is a known one."""
    suffix = type_suffix(content_type) if target.typed_by_answer else None
    return target.path if suffix is None else target.path.with_suffix(suffix)


def _create_temporary(target: Path) -> tuple[BinaryIO, str]:
    """A new hidden file beside ``target``, open for writing, and its name.

    It is made by a plain ``open(name, "xb")``, so it has the permissions that gives
    (0o666 less the umask, applied by the system: the process umask is never read or
    changed, so no other thread sees it altered), and the file object owns its
    descriptor from the start: no failure after this can leak a raw descriptor."""
    for _ in range(tempfile.TMP_MAX):
        name = target.parent / f".{_start_of(target.name)}.{secrets.token_hex(6)}.part"
        try:
            return open(name, "xb"), str(name)  # the caller's `with` closes it
        except FileExistsError:
            continue
        except OSError as exc:
            raise _file_error(target, exc) from None
    raise DownloadError(f"could not create a temporary file beside {describe(str(target))}")


def _start_of(name: str, limit: int = 64) -> str:
    """The start of a file name, at most ``limit`` bytes once encoded, whole characters
    only: a temporary name of 64 characters of a script that takes 4 bytes each would be
    too long for the folder where the name itself fits."""
    return os.fsencode(name)[:limit].decode(sys.getfilesystemencoding(), "ignore")


def _keep_mode(fd: int, target: Path) -> None:
    """Give the file open at ``fd`` the permissions of the file it will replace, if any;
    ``OSError`` if ``target`` cannot be looked at (a symlink loop) or the mode not set."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return
    os.chmod(fd, mode)


def _link_new(temporary: str, target: Path) -> Path:
    """Give ``temporary`` the name ``target``, or ``<stem>-<n><suffix>`` if that is taken,
    never replacing a file: a hard link fails rather than replace (no-clobber)."""
    for number in range(_MAX_SUFFIXES):
        candidate = (
            target if number == 0 else target.with_name(f"{target.stem}-{number}{target.suffix}")
        )
        try:
            _link_exclusive(temporary, candidate)
        except FileExistsError:
            continue
        return candidate
    raise DownloadError(
        f"{describe(str(target))} and {_MAX_SUFFIXES - 1} numbered names beside it are taken"
    )


def _link_exclusive(temporary: str, target: Path) -> None:
    """Link ``temporary`` as ``target``; ``FileExistsError`` if ``target`` exists."""
    try:
        os.link(temporary, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim the name, then move onto it
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            os.replace(temporary, target)
        except OSError:
            _remove(str(target))
            raise


def _file_error(target: Path, exc: OSError) -> DownloadError:
    return DownloadError(f"could not write {describe(str(target))}: {exc.strerror or exc}")


class _Saved(NamedTuple):
    """An answer saved as the file: its ``Content-Type`` header, ``None`` if it sent none
    or more than one (then no one of them is the type of what was saved)."""

    content_type: str | None


async def _stream(fetch: _Fetch, url: URL, file: BinaryIO, max_bytes: int) -> str | None:
    """Write the body of ``url`` to ``file``, following redirects only to http(s) (the key
    only on the API origin), every hop on the download's session and so only to hosts
    its resolver allows; every wire failure becomes a typed error. Returns the saved
    answer's ``Content-Type`` (see :class:`_Saved`)."""
    transport = fetch.transport

    async def save_or_redirect(response: aiohttp.ClientResponse) -> URL | _Saved:
        if response.status in _REDIRECT_STATUSES:
            return _redirect_target(url, response)
        if response.status >= 300:
            await transport.raise_for_download_status(response)
        if response.status != _WHOLE_FILE:
            raise _not_whole(url, response.status)
        types = response.headers.getall("Content-Type", [])
        content_type = types[0] if len(types) == 1 else None
        judge = functools.partial(_judge, fetch, url, content_type)
        await _save(fetch, response, file, max_bytes, judge)
        return _Saved(content_type)

    for _ in range(_MAX_REDIRECTS + 1):
        fetch.check(url)
        answer = await transport.exchange(
            transport.requests.fetch(url), save_or_redirect, session=fetch.session
        )
        if isinstance(answer, _Saved):
            return answer.content_type
        url = answer
    raise DownloadError(f"more than {_MAX_REDIRECTS} redirects")


def _judge(fetch: _Fetch, url: URL, content_type: str | None, head: bytes) -> None:
    """``DownloadError`` if ``head``, the first bytes of a 200 answer from ``url`` of type
    ``content_type``, starts a document, or is labelled one, where media was promised;
    bytes that start a media file are the file whatever their label (a host that
    serves every file as ``text/plain``)."""
    body_kind = refused_start(content_type, head, fetch.media)
    if body_kind is None and media_start(head):
        return
    if kind := refused_type(content_type, fetch.media):
        raise _not_media(fetch, url, content_type, f"({kind})")
    if body_kind:
        raise _not_media(fetch, url, content_type, f"but its body is {body_kind}")


def _not_media(fetch: _Fetch, url: URL, content_type: str | None, kind: str) -> DownloadError:
    """The error of a 200 answer that is a document (``kind`` says which, after its
    ``Content-Type``: ``"(an HTML page)"``, ``"but its body is a JSON document"``)
    where an image, audio or video file was promised; it names the answer's origin (no
    user name, password, path or query: a signed link's query is a credential) and its
    ``Content-Type``, which are not retried: the host answers the same again."""
    stated = (
        "no single Content-Type"
        if content_type is None
        else f"Content-Type {fetch.transport.shown(shorten(content_type, 80))!r}"
    )
    return DownloadError(
        f"{fetch.transport.shown(str(url.origin()))} answered 200 with {stated} {kind}, "
        "not the image, audio or video file of a result: nothing was saved (a storage "
        "host's error page served as 200: the link may have expired or been refused)"
    )


def _not_whole(url: URL, status: int) -> DownloadError:
    """The error of a 2xx answer other than 200: a 206 is a piece of the file, a 204 or
    a 203 not the file as stored, so none may replace the caller's file."""
    return DownloadError(
        f"a {status} answer from {shorten(url.host or '', 80)} is not the whole file "
        "(only a 200 is): nothing was saved"
    )


def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
    """Where a redirect points, if it is an http(s) URL; ``DownloadError`` otherwise."""
    location = response.headers.get("Location")
    if not location:
        raise DownloadError(
            f"a {response.status} redirect from {shorten(url.host or '', 80)} had no Location"
        )
    try:
        joined = url.join(URL(location))
    except (TypeError, ValueError):
        raise DownloadError(f"a {response.status} redirect to an unusable URL") from None
    return fetchable_url("a redirect", joined, error=DownloadError)


async def _save(
    fetch: _Fetch,
    response: aiohttp.ClientResponse,
    file: BinaryIO,
    max_bytes: int,
    judge: Callable[[bytes], None],
) -> None:
    """Copy the body into ``file``, decoded, refusing more than ``max_bytes`` (as decoded)
    and a body in a content coding the SDK cannot undo (``DownloadError`` both). The
    first :data:`SNIFF_BYTES` bytes (or the whole body, if shorter) go to ``judge``
    before a byte is written, so a body it refuses never reaches the file."""
    coded = content_codings(response.headers.getall("Content-Encoding", []))
    # A coded body's Content-Length is its size as sent, which may be over ``max_bytes``
    # while it decodes to less (a PNG does not compress): ``chunks`` bounds it instead.
    if not coded and response.content_length is not None and response.content_length > max_bytes:
        raise DownloadError(
            f"the result is {response.content_length} bytes, over max_bytes={max_bytes}"
        )
    async with contextlib.aclosing(_body(fetch, response, max_bytes)) as body:
        head = bytearray()
        async for chunk in body:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        judge(bytes(head))
        file.write(head)
        async for chunk in body:
            file.write(chunk)


async def _body(
    fetch: _Fetch, response: aiohttp.ClientResponse, max_bytes: int
) -> AsyncGenerator[bytes, None]:
    """The decoded body in chunks; ``DownloadError`` once it is over ``max_bytes``."""
    written = 0
    chunks = aiter(fetch.transport.chunks(response, max_bytes, error=DownloadError))
    while True:
        # Each read within the client's timeout by a timer of the SDK's own: aiohttp's
        # (sock_read) is lost with a connection its session drops on close(), a lent
        # session the caller closes mid-download, and the read then waited forever.
        async with asyncio.timeout(fetch.transport.timeout):
            chunk = await anext(chunks, None)
        if chunk is None:
            return
        written += len(chunk)
        if written > max_bytes:
            raise DownloadError(f"the result is over max_bytes={max_bytes}")
        yield chunk


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
