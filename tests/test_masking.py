"""The key is masked in everything the SDK derives from an answer, in every harmless
variation a server may write it in, and every text the SDK makes from an answer is bounded."""

from __future__ import annotations

import html
import html.entities
import json
import logging
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st

from gptunnel_async import GPTunnelClient, GPTunnelError, PollPolicy, TaskFailedError
from gptunnel_async._sansio.responses import decode_media_task, decode_task
from gptunnel_async._sansio.text import MIN_RUN, SecretMask, _canonical, body_text, excerpt
from gptunnel_async.cli import main

from .conftest import ScriptedAPI, task_json
from .test_secrets import exception_texts

KEY = "Zq9xT3-secret-mK7pW2vL"
POLICY = PollPolicy(initial=0.01, multiplier=1.0, max_interval=0.01, jitter=0.0, timeout=5.0)


def key_runs(key: str) -> set[str]:
    compared = _canonical(key)
    size = min(MIN_RUN, len(compared))
    return {compared[start : start + size] for start in range(len(compared) - size + 1)}


def holds_key(text: str, key: str = KEY) -> bool:
    """Whether ``text``, decoded as the mask decodes it, holds a run of the key."""
    canonical = _canonical(text)
    return any(run in canonical for run in key_runs(key))


# -- the variations, one character at a time ------------------------------------------

HTML5_NAMES = {
    text: f"&{name}"
    for name, text in sorted(html.entities.html5.items(), reverse=True)
    if len(text) == 1 and text.isascii() and name.endswith(";")
}
"""A named reference for each ASCII character that has one (``_`` -> ``&lowbar;``)."""

MATH_BOLD = {
    **{chr(97 + n): chr(0x1D41A + n) for n in range(26)},
    **{chr(65 + n): chr(0x1D400 + n) for n in range(26)},
    **{chr(48 + n): chr(0x1D7CE + n) for n in range(10)},
}
"""Mathematical bold letters and digits, beyond U+FFFF: JSON writes them as pairs."""

ENCODINGS: dict[str, Callable[[str], str]] = {
    "as is": lambda c: c,
    "upper": str.upper,
    "lower": str.lower,
    "percent": lambda c: f"%{ord(c):02X}",
    "percent, lower hex": lambda c: f"%{ord(c):02x}",
    "json": lambda c: f"\\u{ord(c):04x}",
    "html decimal": lambda c: f"&#{ord(c)};",
    "html hex": lambda c: f"&#x{ord(c):x};",
    "html named": lambda c: html.escape(c),
    "js hex": lambda c: f"\\x{ord(c):02x}",
    "html padded": lambda c: f"&#{ord(c):08d};",
    "html5 named": lambda c: HTML5_NAMES.get(c, c),
    # Read as the character by anyone who sees it, invisible ones ignored:
    "full-width": lambda c: chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000",
    "accented": lambda c: c + "\u0301",  # a combining acute accent on it
    "zero-width space after": lambda c: c + "\u200b",
    "soft hyphen before": lambda c: "\u00ad" + c,
    "word joiner and BOM around": lambda c: f"\u2060{c}\ufeff",
    "tagged": lambda c: c + "\U000e0041",  # a character of the invisible tag block
    "Hangul filler after": lambda c: c + "\u3164",  # a letter drawn as nothing
    "in an enclosing circle": lambda c: c + "\u20dd",
    # A combining mark and a format control since Unicode 15.0, unassigned in 14.0
    # (Python 3.11's tables): masked alike on every Python.
    "Unicode 15 combining mark after": lambda c: c + "\U0001e08f",
    "Unicode 15 hieroglyph format control after": lambda c: c + "\U00013439",
    "full-width, percent-encoded UTF-8": lambda c: "".join(
        f"%{byte:02X}" for byte in ENCODINGS["full-width"](c).encode()
    ),
    "math bold, JSON surrogate pair": lambda c: (
        json.dumps(MATH_BOLD.get(c, c))[1:-1] if c != '"' and c != "\\" else c
    ),
    "soft hyphen as &shy;": lambda c: c + "&shy;",
}


@st.composite
def variation(draw: st.DrawFn, key: str) -> str:
    """``key`` (or a run of at least MIN_RUN of it) with each character encoded any way."""
    start = draw(st.integers(0, max(0, len(key) - MIN_RUN)))
    end = draw(st.integers(min(len(key), start + MIN_RUN), len(key)))
    encode = st.sampled_from(sorted(ENCODINGS))
    return "".join(ENCODINGS[draw(encode)](char) for char in key[start:end])


keys = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/=&%\\\"'",
    min_size=MIN_RUN,
    max_size=64,
)
surroundings = st.text(max_size=40)


@given(
    keys.flatmap(lambda key: st.tuples(st.just(key), variation(key))), surroundings, surroundings
)
def test_any_variation_of_the_key_anywhere_in_a_text_is_masked(
    pair: tuple[str, str], before: str, after: str
) -> None:
    key, echoed = pair
    text = f"{before} '{echoed}'\n{after}"
    masked = SecretMask(key)(text)
    assert not holds_key(masked, key), masked


@given(keys.flatmap(lambda key: st.tuples(st.just(key), variation(key))), st.integers(0, 3000))
def test_an_excerpt_never_shows_a_run_of_the_key_wherever_the_cut_falls(
    pair: tuple[str, str], padding: int
) -> None:
    key, echoed = pair
    shown = excerpt("x" * padding + echoed + " tail", key, 200)
    assert len(shown) <= 200
    assert not holds_key(shown, key)


@given(st.text(max_size=200))
def test_a_text_without_the_key_is_left_as_it_is(text: str) -> None:
    if not holds_key(text):
        assert SecretMask(KEY)(text) == text


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_each_encoding_of_the_whole_key_is_masked(name: str) -> None:
    echoed = "".join(ENCODINGS[name](char) for char in KEY)
    assert SecretMask(KEY)(f"key={echoed}!") == "key=***!"


@given(st.integers(0, 0x10FFFF).map(chr).filter(lambda char: unicodedata.category(char) == "Cn"))
def test_a_key_between_code_points_this_python_does_not_assign_is_masked(char: str) -> None:
    """A later Unicode may assign them as combining marks or format characters (read as
    nothing), so they are read as nothing on every Python, whichever Unicode it has."""
    assert SecretMask(KEY)(f"key={char.join(KEY)}!") == "key=***!"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"  {KEY}  ", "  ***  "),
        (f'"{KEY}"', '"***"'),
        (f"Bearer {KEY}", "Bearer ***"),
        (f"{KEY[:10]}…", "***…"),  # a server that truncates
        (f"****{KEY[-8:]}", "*******"),  # a suffix
        (KEY[: MIN_RUN - 1], KEY[: MIN_RUN - 1]),  # too short to say anything
        (f"{KEY}{KEY}", "***"),
    ],
)
def test_surroundings_and_pieces(text: str, shown: str) -> None:
    assert SecretMask(KEY)(text) == shown


@pytest.mark.parametrize(
    ("key", "echoed"),
    [
        ("00000%00", "00000%00"),  # reads as "00000" and a NUL when echoed as is
        ("00000%00", "00000%2500"),  # its "%" encoded: reads as the key itself
        ("0000000\\/", "0000000\\/"),  # a JSON escape inside the key
        ("00000\\/0", "00000/0"),  # the server decoded it
        ("a&amp;bcdefgh", "A&AMP;BCDEFGH"),
        ("k%41%42cdefgh", "k%41%2542cdefgh"),  # one part decoded, one not
    ],
)
def test_a_key_that_looks_encoded_is_masked_as_it_is_and_decoded(key: str, echoed: str) -> None:
    masked = SecretMask(key)(f"<{echoed}>")
    assert not holds_key(masked, key), masked
    assert masked.startswith("<") and masked.endswith(">")


def test_a_huge_text_is_masked_without_going_character_by_character() -> None:
    text = "x" * 3_000_000 + KEY
    masked = SecretMask(KEY)(text)
    assert not holds_key(masked)


# -- everything the SDK derives from an answer --------------------------------------

FIELDS = ("id", "status", "type", "result", "error", "parentId", "object", "actions")
VARIANTS = {
    "exact": KEY,
    "upper": KEY.upper(),
    "percent": "".join(f"%{ord(c):02x}" for c in KEY),
    "truncated": KEY[:12] + "...",
    "quoted": f' "{KEY}" ',
    "a json escape as text": f"{KEY[:3]}\\u{ord(KEY[3]):04x}{KEY[4:8]}",
}


def echoing(field: str, variant: str, **extra: Any) -> dict[str, Any]:
    body = task_json(**extra)
    value = f"{'y' * 190} {VARIANTS[variant]} z"
    body[field] = [value] if field == "actions" else value
    return body


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_decoded_task_never_holds_the_key(field: str, variant: str) -> None:
    body = json.dumps(echoing(field, variant, status="failed")).encode()
    try:
        task = decode_task(body, 200, secret=KEY)
    except GPTunnelError as error:
        texts = list(exception_texts(error))
    else:
        texts = [repr(task), str(task), json.dumps(task.actions), str(TaskFailedError(task))]
    assert not any(holds_key(text) for text in texts)


@pytest.mark.parametrize("field", ["id", "status", "model", "url", "message"])
def test_a_decoded_media_task_never_holds_the_key(field: str) -> None:
    body = {"code": 0, "id": "m", "status": "failed", field: f"<{KEY.lower()}>"}
    task = decode_media_task(json.dumps(body).encode(), 200, secret=KEY)
    assert not holds_key(repr(task))


@pytest.mark.parametrize("field", FIELDS)
async def test_no_exception_log_or_repr_of_a_wait_holds_an_echoed_key(
    api: ScriptedAPI, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    asked = "task-1"
    api.script(
        task_json(status="running", percent=5),
        echoing(field, "upper", status="failed", id=asked) if field != "id" else task_json(),
        echoing(field, "exact", status="failed"),
    )
    texts: list[str] = []
    async with GPTunnelClient(api_key=KEY, base_url=api.base_url, poll_policy=POLICY) as client:
        for _ in range(2):
            try:
                await client.wait_for_result(asked, timeout=0.5)
            except GPTunnelError as error:
                texts += exception_texts(error)
    texts += [record.getMessage() for record in caplog.records]
    assert texts
    assert not any(holds_key(text) for text in texts)


# -- bounded --------------------------------------------------------------------------

HUGE = "e" * 3_000_000


@pytest.mark.parametrize("field", ["id", "status", "error", "type"])
async def test_every_text_made_from_a_huge_field_is_bounded(
    api: ScriptedAPI, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    body = task_json(status="failed", percent=0)
    body[field] = HUGE if field != "status" else "failed" + " " * 10 + HUGE
    api.script(task_json(status="running" + HUGE, percent=1), body)
    async with GPTunnelClient(api_key=KEY, base_url=api.base_url, poll_policy=POLICY) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.wait_for_result("task-1", timeout=1.0)
    assert len(str(caught.value)) < 1000
    lines = [record.getMessage() for record in caplog.records]
    assert lines and max(map(len, lines)) < 1000


@pytest.mark.parametrize("field", ["message", "type", "param", "code"])
async def test_a_huge_error_field_gives_a_bounded_api_error(
    api: ScriptedAPI, client: GPTunnelClient, field: str
) -> None:
    error = {"message": "m", "type": "t", field: HUGE}
    api.script((400, {"error": error}, {}))
    with pytest.raises(GPTunnelError) as caught:
        await client.get_result("task-1")
    assert len(str(caught.value)) < 1000
    assert all(len(str(value)) < 1000 for value in vars(caught.value).values())


# -- the command line -----------------------------------------------------------------

MISTYPED = [
    ["--api_key", KEY, "result", "x"],
    ["--apikey", KEY, "result", "x"],
    [f"--api_key={KEY}", "result", "x"],
    ["-k", KEY, "result", "x"],
    [KEY, "result", "x"],
    ["result", "x", "--api_key", KEY],
    ["result", "--api-key", KEY],
    ["wait", "x", "--timeout", KEY],
    ["wait", "x", f"--timeout={KEY}"],
    ["wait", "x", f"--max-interval={KEY}"],
    ["--api-key", KEY, "resutl", "x"],
    ["--API-KEY", KEY.upper(), "result"],
]


@pytest.mark.parametrize("argv", MISTYPED)
def test_no_command_line_error_repeats_the_key(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert "error" in captured.err
    assert not holds_key(captured.err + captured.out)


def test_a_key_from_the_environment_is_hidden_in_command_line_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPTUNNEL_API_KEY", "short-k3y")
    with pytest.raises(SystemExit):
        main(["short-k3y"])
    assert "short-k3y" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["wait", "x", "--max-interval=nan"],
        ["wait", "x", "--max-interval=86400.0000001"],
        ["wait", "x", "--timeout=-12345678901234"],
        ["media", "suno", "a song", "--timeout=1e30900000"],
    ],
)
def test_an_option_given_with_its_value_after_equals_is_named_in_its_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--max-interval=nan`` read "argument ***: must be ...": the whole word was
    hidden as a possible key, and with it the option's name wherever it appeared."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    option = argv[-1].partition("=")[0]
    assert f"argument {option}:" in capsys.readouterr().err


def test_a_mistyped_command_is_still_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["resutl", "x"])
    assert "invalid choice: 'resutl'" in capsys.readouterr().err


def test_every_text_of_a_media_task_and_its_clips_is_masked() -> None:
    clip = dict.fromkeys(("audio_url", "image_url", "video_url", "id", "title"), f"<{KEY}>")
    body = {"code": 0, "id": "m", "status": "succeeded", "model": KEY, "result": [clip]}
    task = decode_media_task(json.dumps(body).encode(), 200, secret=KEY)
    assert task.is_done and task.clips
    assert not holds_key(repr(task))


@pytest.mark.parametrize(
    ("key", "text", "shown"),
    [
        ("e", "done", "done"),  # inside a word: left alone
        ("e", "key e here", "key *** here"),
        ("demo", "https://s.example/demo/r.png", "https://s.example/***/r.png"),
        ("test", "65819c48test", "65819c48test"),
        ("Test", "a TEST b", "a *** b"),
    ],
)
def test_a_key_shorter_than_a_run_is_masked_only_as_a_word(key: str, text: str, shown: str) -> None:
    assert SecretMask(key)(text) == shown


@pytest.mark.parametrize(
    ("key", "task_id"),
    [("demo", "demo-task-1"), ("test", "65819c48test"), ("e", "65819c485337280001a609e7")],
)
async def test_a_short_key_never_makes_the_task_asked_for_unreadable(
    api: ScriptedAPI, key: str, task_id: str
) -> None:
    api.script(task_json(id=task_id, status="done", percent=100))
    async with GPTunnelClient(api_key=key, base_url=api.base_url, poll_policy=POLICY) as client:
        assert (await client.get_result(task_id)).id == task_id
        done = await client.wait_for_result(task_id, timeout=2)
    assert (done.id, done.status) == (task_id, "done")


def test_numeric_references_without_a_semicolon_are_read_as_browsers_read_them() -> None:
    key = "Zq-secret-mK_pW.vL"
    echoed = "".join(f"&#{ord(c)}" if not c.isdigit() else c for c in key)
    assert SecretMask(key)(f"<{echoed}>") == "<***>"


def test_a_ligature_reads_as_its_letters() -> None:
    key = "shds-diffieFixedFloor0123456789fi"
    echoed = "shds-di\ufb03eFixedFloor0123456789\ufb01"  # "ffi" and "fi" as one character each
    assert SecretMask(key)(f"key={echoed} end") == "key=*** end"


@pytest.mark.parametrize(
    ("text", "shows"),
    [
        ("key=Zq-secret-mK_pW.vL", True),
        ("key=" + quote("Zq-secret-mK_pW.vL", safe=""), True),  # as a URL carries it
        ("no key here", False),
        ("Zq-secret-mK_pW.vL"[: MIN_RUN - 1], False),  # a piece too short to be a run of it
    ],
)
def test_a_mask_says_whether_a_text_shows_its_secret(text: str, shows: bool) -> None:
    assert SecretMask("Zq-secret-mK_pW.vL").shows(text) is shows


# -- a body in any encoding JSON allows ----------------------------------------------------

JSON_ENCODINGS = ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]
"""The encodings ``json.loads`` reads a body in (RFC 8259's detection, a BOM too)."""


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


ASCII_KEYS = st.from_regex(r"[A-Za-z0-9_.-]{8,40}", fullmatch=True)


@given(value=JSON_VALUES, key=ASCII_KEYS, encoding=st.sampled_from(["utf-8", *JSON_ENCODINGS]))
def test_a_key_anywhere_in_a_json_body_of_any_encoding_reads_whole(
    value: Any, key: str, encoding: str
) -> None:
    """``body_text`` is what the key is looked for in: beside any other text, in any
    encoding ``json.loads`` reads, the key's characters must stay one run."""
    document = json.dumps([value, key, {"k": f"{value}{key}{value}"}], ensure_ascii=False)
    assert key in body_text(document.encode(encoding))
    assert body_text(document.encode("utf-8")) == document  # UTF-8 reads as it is


@given(before=st.binary(max_size=64), after=st.binary(max_size=64), key=ASCII_KEYS)
@example(before=b"\x00", after=b"!!", key="abcdefgh1234")  # read as UTF-16 by JSON's sniffing
@example(before=b"%", after=b"", key="00000000")  # "%00" read as one encoded character
@example(before=b"&#x", after=b";", key="deadbeefcafe0123")  # a hex key read as one reference
@example(before=b"&#", after=b"", key="1234567890123")
@example(before=b"\\u", after=b"", key="abcd1234efgh")
@example(before=b"\\x", after=b"", key="ab12345678")
def test_a_key_between_any_bytes_is_masked_in_an_error_excerpt(
    before: bytes, after: bytes, key: str
) -> None:
    """A body that is no JSON, with NUL bytes or bytes that are not UTF-8 around the key
    (one starting with a NUL read as UTF-16 turned the key into other characters), or
    bytes that make the key's first characters read as an encoded one (``%`` before a
    key starting with two hex digits; ``&#x`` before a hex key, which swallowed it
    whole)."""
    shown = excerpt(before + key.encode() + after, key, 2000)
    for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        assert key.encode() not in shown.encode(encoding, "surrogatepass"), encoding


def encoded(status: int, document: str, encoding: str) -> Callable[..., Any]:
    """A reply of ``document`` in ``encoding``, under ``status``."""

    async def reply(request: web.Request) -> web.Response:
        return web.Response(status=status, body=document.encode(encoding))

    return reply


def shows_key(text: str) -> bool:
    """Whether ``text`` shows a run of the key, also between NULs (``\\x00``): the key of
    a UTF-16 body read as UTF-8, one NUL after each of its characters."""
    return holds_key(text) or holds_key(text.replace("\\x00", "").replace("\x00", ""))


@pytest.mark.parametrize("encoding", JSON_ENCODINGS)
async def test_a_key_echoed_in_a_body_of_any_json_encoding_is_masked_in_the_models(
    api: ScriptedAPI, encoding: str
) -> None:
    """The models' quick look for the key read the body as UTF-8, while the parser also
    reads UTF-16 and UTF-32: such a task, media task or balance kept the key as sent."""
    task = {"id": "task-1", "status": f"running {KEY}", "percent": 5, "error": KEY}
    media = {"code": 0, "id": "m", "status": "done", "model": KEY, "url": f"https://s/{KEY}"}
    api.script(
        encoded(200, json.dumps(task), encoding),
        encoded(200, json.dumps(media), encoding),
        encoded(200, json.dumps({"orgId": KEY, "balance": 1}), encoding),
    )
    async with GPTunnelClient(api_key=KEY, base_url=api.base_url, max_retries=0) as client:
        shown = [
            repr(await client.get_result("task-1")),
            repr(await client.media.result("m")),
            repr(await client.balance()),
        ]
    assert [text for text in shown if shows_key(text)] == []


@pytest.mark.parametrize("encoding", JSON_ENCODINGS)
@pytest.mark.parametrize(
    ("status", "document"),
    [
        (200, json.dumps({"x": KEY})),
        (200, json.dumps([KEY])),
        (200, json.dumps({"id": "task-2", "status": KEY})),
        (500, f"a page that quotes {KEY}"),
        (403, f"<html>{KEY}</html>"),
    ],
)
async def test_a_key_echoed_in_a_body_of_any_json_encoding_is_masked_in_errors(
    api: ScriptedAPI, encoding: str, status: int, document: str
) -> None:
    """An error's excerpt of the body read it as UTF-8: a UTF-16 body showed the key
    with a ``\\x00`` after each of its characters, which the mask did not see."""
    api.script(encoded(status, document, encoding))
    async with GPTunnelClient(api_key=KEY, base_url=api.base_url, max_retries=0) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.get_result("task-1")
    assert [text for text in exception_texts(caught.value) if shows_key(text)] == []
