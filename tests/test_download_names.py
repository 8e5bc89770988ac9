"""A file named after its URL is the server's choice: it never replaces an existing
file, keeps only media names, and gets the permissions a plain ``open()`` gives; a file
the caller named is replaced, keeping its permissions. A URL without a media name gives
the task id as the name, and the answer's media type its extension (else ``.bin``)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from gptunnel_async import ConfigurationError, GPTunnelClient, MediaClip, MediaTask, Task
from gptunnel_async._download import check_destination
from gptunnel_async._sansio.file_names import (
    MEDIA_SUFFIXES,
    MEDIA_TYPE_SUFFIXES,
    id_file_stem,
    names_a_device,
    type_suffix,
    url_media_name,
)

from .conftest import loopback_server

BODY = b"\x89PNG\r\n\x1a\n" + b"server bytes" * 10


_STORAGE: dict[GPTunnelClient, str] = {}


@pytest.fixture
async def client() -> AsyncIterator[GPTunnelClient]:
    """A client of a local API (so local results are allowed) and a loopback storage
    host answering ``BODY`` on every path, with a ``Content-Type`` header for each
    ``type`` in the query (aiohttp's ``application/octet-stream`` without one); a path
    under ``/hop/`` redirects to the rest of it, keeping the query."""

    async def answer(request: web.Request) -> web.Response:
        if request.path.startswith("/hop/"):
            raise web.HTTPFound(f"{request.path[len('/hop') :]}?{request.query_string}")
        types = CIMultiDict(("Content-Type", kind) for kind in request.query.getall("type", []))
        return web.Response(body=BODY, headers=types)

    async with (
        loopback_server(answer) as server,
        GPTunnelClient(api_key="k-1", base_url="http://127.0.0.1:9/v1") as client,
    ):
        _STORAGE[client] = str(server.make_url("/"))
        yield client
        del _STORAGE[client]


def storage(client: GPTunnelClient) -> str:
    return _STORAGE[client]


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def done(url: str) -> Task:
    return Task(id="t1", status="done", result=url)


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    yield
    os.umask(previous)


# -- the name, pure ------------------------------------------------------------------

url_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True).filter(
    lambda name: not names_a_device(name)
)


@given(stem=url_names, suffix=st.sampled_from(sorted(MEDIA_SUFFIXES)))
def test_a_media_name_from_the_url_is_kept(stem: str, suffix: str) -> None:
    name = stem + suffix.upper() if len(stem) % 2 else stem + suffix
    assert url_media_name(URL("https://s.example/a/") / name) == name


@given(name=url_names.filter(lambda n: Path(n.lower()).suffix not in MEDIA_SUFFIXES))
def test_any_other_name_from_the_url_gives_way_to_the_fallback(name: str) -> None:
    assert url_media_name(URL("https://s.example/a/") / name) is None


@pytest.mark.parametrize(
    "path",
    ["/bot.py", "/main.py", "/.bashrc", "/conftest.py", "/run.sh", "/Dockerfile", "/a.png.sh", "/"],
)
def test_code_and_config_names_are_never_taken_from_the_url(path: str) -> None:
    assert url_media_name(URL("https://s.example").with_path(path)) is None


# -- into a folder: never replacing --------------------------------------------------


@pytest.mark.parametrize("name", ["bot.py", "requirements.txt", "Dockerfile"])
async def test_a_url_naming_a_code_file_leaves_it_alone(
    client: GPTunnelClient, tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_text("print('mine')")
    saved = await client.download_result(done(storage(client) + "files/" + name), tmp_path)
    assert saved == tmp_path / "t1.bin"
    assert (tmp_path / name).read_text() == "print('mine')"
    assert saved.read_bytes() == BODY


async def test_a_taken_media_name_gets_a_numbered_one_and_the_file_stays(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    (tmp_path / "photo.png").write_bytes(b"mine")
    (tmp_path / "photo-1.png").write_bytes(b"mine too")
    url = done(storage(client) + "x/photo.png")
    first = await client.download_result(url, tmp_path)
    second = await client.download_result(url, tmp_path)
    assert (first.name, second.name) == ("photo-2.png", "photo-3.png")
    assert (tmp_path / "photo.png").read_bytes() == b"mine"
    assert (tmp_path / "photo-1.png").read_bytes() == b"mine too"
    assert first.read_bytes() == second.read_bytes() == BODY
    assert not [name for name in names(tmp_path) if name.startswith(".")]


async def test_a_symlink_with_the_urls_name_is_not_followed_nor_replaced(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.png").symlink_to(victim)
    saved = await client.download_result(done(storage(client) + "a.png"), folder)
    assert saved == folder / "a-1.png"
    assert victim.read_text() == "mine"
    assert (folder / "a.png").is_symlink()


async def test_clips_saved_into_a_folder_replace_nothing(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    (tmp_path / "song.mp3").write_bytes(b"mine")
    base = storage(client)
    task = MediaTask(
        id="m1",
        status="done",
        clips=(MediaClip(audio_url=base + "song.mp3"), MediaClip(audio_url=base + "main.py")),
    )
    saved = await client.download_results(task, tmp_path)
    assert [p.name for p in saved] == ["song-1.mp3", "m1-1.bin"]
    assert (tmp_path / "song.mp3").read_bytes() == b"mine"


# -- names made from the task id, which the server chose ----------------------------------

HOSTILE_IDS = [
    "../escaped/pwned",
    "/abs/olute/x",
    "..",
    ".",
    "-rf",
    ".bashrc",
    "a\x1b]0;title\x07\nforged: line",
    "a/b",
    "C:\\x",
    "x" * 300,
    "\ud800",
    "",
]


@given(st.text())
def test_a_stem_from_any_id_is_one_plain_name(task_id: str) -> None:
    stem = id_file_stem(task_id)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", stem), stem
    assert len(stem) <= 75
    assert Path(stem).name == stem and stem not in (".", "..")
    assert not names_a_device(f"{stem}.bin") and not names_a_device(f"{stem}-1.png")


DEVICES = ["CON", "prn", "Aux", "NUL", "com0", "COM1", "com9", "LPT1", "lpt9"]


def test_the_names_windows_reserves_for_devices_are_known() -> None:
    """Microsoft's list, in any case, whatever follows the first dot; near misses are
    plain names."""
    for device in DEVICES:
        for name in (device, f"{device}.png", f"{device}.tar.gz", f"{device}..png"):
            assert names_a_device(name), name
    for name in ("console", "com10.png", "nul_.png", "lpt.png", "auxiliary.mp3", "xcon.png"):
        assert not names_a_device(name), name


@given(
    device=st.sampled_from(DEVICES),
    rest=st.from_regex(r"(\.[A-Za-z0-9._-]{0,20})?", fullmatch=True),
    suffix=st.sampled_from(sorted(MEDIA_SUFFIXES)),
)
def test_no_name_from_the_server_names_a_device(device: str, rest: str, suffix: str) -> None:
    """A URL or a task id that names a Windows device (``NUL.png``: every byte written
    there is dropped, and the download said it saved the file) gives a name that does
    not: the URL's name gives way to the fallback, the id its hashed stem."""
    name = f"{device}{rest}{suffix}"
    assert url_media_name(URL("https://s.example/a/") / name) is None
    for task_id in (device, f"{device}{rest}", name):
        stem = id_file_stem(task_id)
        assert not names_a_device(f"{stem}.bin"), stem
        assert not names_a_device(f"{stem}-0.png"), stem


async def test_a_result_url_naming_a_device_is_saved_under_the_task_id(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    url = f"{storage(client)}NUL.png"
    saved = await client.download_result(done(url), tmp_path)
    assert saved.name == "t1.bin"
    assert names(tmp_path) == ["t1.bin"]


@given(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True).filter(
        lambda task_id: not names_a_device(task_id)
    )
)
def test_a_plain_id_is_its_own_stem(task_id: str) -> None:
    assert id_file_stem(task_id) == task_id


@given(st.text(), st.text())
def test_two_ids_that_are_not_plain_names_get_different_stems(first: str, second: str) -> None:
    if first != second and id_file_stem(first) != first and id_file_stem(second) != second:
        assert id_file_stem(first) != id_file_stem(second)


@pytest.mark.parametrize("task_id", HOSTILE_IDS)
async def test_a_server_chosen_id_never_takes_a_download_out_of_its_folder(
    client: GPTunnelClient, tmp_path: Path, task_id: str
) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    base = storage(client)
    task = Task(id=task_id, status="done", result=base + "file")  # no media name in the URL
    saved = await client.download_result(task, folder)
    assert saved.parent == folder
    media = MediaTask(
        id=task_id,
        status="done",
        clips=(MediaClip(audio_url=base + "song.mp3"), MediaClip(audio_url=base + "song.mp3")),
    )
    clips = await client.download_results(media, folder)
    assert [path.parent for path in clips] == [folder, folder]
    assert names(tmp_path) == ["downloads"]
    for name in names(folder):
        assert Path(name).name == name and not name.startswith(("-", "."))


# -- a file the caller named -----------------------------------------------------------


async def test_a_file_the_caller_named_is_replaced_keeping_its_permissions(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    assert await client.download_result(storage(client) + "x.png", target) == target
    assert target.read_bytes() == BODY
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.usefixtures("umask_027")
@pytest.mark.parametrize("into_folder", [True, False])
async def test_a_new_file_gets_what_open_gives_and_the_umask_is_never_changed(
    client: GPTunnelClient, tmp_path: Path, into_folder: bool
) -> None:
    dest = tmp_path if into_folder else tmp_path / "new.png"
    saved = await client.download_result(storage(client) + "n.png", dest)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o640
    assert os.umask(0o027) == 0o027


@pytest.mark.parametrize("suffix", ["/", "//"])
async def test_a_trailing_slash_means_a_folder_and_a_missing_one_is_refused(
    client: GPTunnelClient, tmp_path: Path, suffix: str
) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        await client.download_result(storage(client) + "x.png", f"{tmp_path}/missing{suffix}")
    assert names(tmp_path) == []


# -- an empty dest ------------------------------------------------------------------------


def test_an_empty_dest_is_refused_under_the_name_it_was_given() -> None:
    with pytest.raises(ConfigurationError, match=r"^dest is empty: name a file or an existing"):
        check_destination("")
    with pytest.raises(ConfigurationError, match=r"^--save is empty: name a file or an existing"):
        check_destination("", "--save")


async def test_an_empty_dest_writes_nowhere(
    client: GPTunnelClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Path("")`` is the current folder: an unset variable (``os.environ.get("OUT",
    "")``) must not save the result there."""
    monkeypatch.chdir(tmp_path)
    task = done(storage(client) + "x/photo.png")
    with pytest.raises(ConfigurationError, match=r"^dest is empty: name a file or an existing"):
        await client.download_result(task, "")
    with pytest.raises(ConfigurationError, match=r"^folder is empty: name an existing folder"):
        await client.download_results(task, "")
    assert names(tmp_path) == []


# -- a name from the task id takes the answer's media type --------------------------------


def test_every_known_media_type_gives_a_media_extension() -> None:
    assert set(MEDIA_TYPE_SUFFIXES.values()) <= MEDIA_SUFFIXES
    assert all(kind == kind.lower() and kind.isascii() for kind in MEDIA_TYPE_SUFFIXES)


@given(st.text() | st.none())
def test_any_content_type_gives_a_media_extension_or_none(header: str | None) -> None:
    assert type_suffix(header) in MEDIA_SUFFIXES | {None}


spaces = st.text(" \t", max_size=3)


@given(
    kind=st.sampled_from(sorted(MEDIA_TYPE_SUFFIXES)),
    case=st.lists(st.booleans(), min_size=30, max_size=30),
    before=spaces,
    after=spaces,
    parameters=st.sampled_from(["", ";", "; charset=binary", ';q=1;x="a;b"']),
)
def test_a_known_media_type_is_read_in_any_case_with_any_parameters(
    kind: str, case: list[bool], before: str, after: str, parameters: str
) -> None:
    spelled = "".join(c.upper() if up else c for c, up in zip(kind, case, strict=False))
    assert type_suffix(f"{before}{spelled}{after}{parameters}") == MEDIA_TYPE_SUFFIXES[kind]


@pytest.mark.parametrize(
    "header",
    [
        "image/svg+xml",  # a picture that may carry scripts
        "text/html",
        "application/octet-stream",
        "application/x-sh",
        "image/png-but-not",
        "image / png",
        "image/pn\u212a",  # not ASCII: no look-alike of a known type either
        "",
    ],
)
def test_any_other_media_type_gives_no_extension(header: str) -> None:
    assert type_suffix(header) is None


@pytest.mark.parametrize(
    ("types", "name"),
    [
        (["image/png"], "t1.png"),
        (["IMAGE/JPEG; charset=binary"], "t1.jpg"),
        (["image/webp"], "t1.webp"),
        (["audio/mpeg"], "t1.mp3"),
        (["audio/wav"], "t1.wav"),
        (["video/mp4"], "t1.mp4"),
        (["application/x-unknown"], "t1.bin"),  # a document type is refused: test_result_bodies
        (["image/svg+xml"], "t1.bin"),
        ([], "t1.bin"),  # aiohttp's application/octet-stream
        (["image/png", "image/png"], "t1.bin"),  # several: none is the answer's
        (["image/png", "audio/mpeg"], "t1.bin"),
    ],
)
async def test_a_url_without_a_media_name_is_saved_under_the_id_with_the_answers_type(
    client: GPTunnelClient, tmp_path: Path, types: list[str], name: str
) -> None:
    """Midjourney's results (``/task/image/<id>?cache=100``) name no file."""
    url = URL(storage(client) + "task/image/t1").with_query([("cache", "100")])
    url = url.update_query([("type", kind) for kind in types])
    saved = await client.download_result(done(str(url)), tmp_path)
    assert saved == tmp_path / name
    assert saved.read_bytes() == BODY
    assert names(tmp_path) == [name]


async def test_the_type_of_the_answer_saved_counts_not_of_a_redirect(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    url = storage(client) + "hop/file?type=image/gif"
    saved = await client.download_result(done(url), tmp_path)
    assert saved.name == "t1.gif"


async def test_a_bare_url_without_a_media_name_takes_the_answers_type_too(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    saved = await client.download_result(storage(client) + "blob?type=audio/mpeg", tmp_path)
    assert saved.name == "result.mp3"


async def test_a_media_name_in_the_url_is_kept_whatever_the_type(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    saved = await client.download_result(done(storage(client) + "a.png?type=image/jpeg"), tmp_path)
    assert saved.name == "a.png"


async def test_a_file_the_caller_named_keeps_its_name_whatever_the_type(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    dest = tmp_path / "out.dat"
    saved = await client.download_result(done(storage(client) + "blob?type=image/png"), dest)
    assert saved == dest and names(tmp_path) == ["out.dat"]


async def test_a_typed_name_that_is_taken_gets_a_numbered_one(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    (tmp_path / "t1.png").write_bytes(b"mine")
    saved = await client.download_result(done(storage(client) + "blob?type=image/png"), tmp_path)
    assert saved.name == "t1-1.png"
    assert (tmp_path / "t1.png").read_bytes() == b"mine"


async def test_a_tasks_only_file_is_named_alike_by_download_result_and_download_results(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    """Nothing documents a ``-0`` for a task's only file: ``download_results`` names it
    as ``download_result`` does."""
    one = MediaTask(
        id="m1", status="done", clips=(MediaClip(audio_url=storage(client) + "s?type=audio/mpeg"),)
    )
    (tmp_path / "one").mkdir()
    (tmp_path / "all").mkdir()
    first = await client.download_result(one, tmp_path / "one")
    (second,) = await client.download_results(one, tmp_path / "all")
    assert (first.name, second.name) == ("m1.mp3", "m1.mp3")


async def test_each_of_several_files_without_a_media_name_is_numbered_and_typed(
    client: GPTunnelClient, tmp_path: Path
) -> None:
    base = storage(client)
    task = MediaTask(
        id="m1",
        status="done",
        clips=(
            MediaClip(audio_url=base + "a?type=audio/mpeg"),
            MediaClip(audio_url=base + "b?type=application/octet-stream"),
            MediaClip(audio_url=base + "song.mp3?type=image/png"),
        ),
    )
    saved = await client.download_results(task, tmp_path)
    assert [path.name for path in saved] == ["m1-0.mp3", "m1-1.bin", "song.mp3"]
