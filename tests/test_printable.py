"""Server text can neither drive a terminal nor forge a log line: control characters and
bidirectional overrides are shown escaped wherever the SDK shows server text."""

from __future__ import annotations

import logging
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import GPTunnelClient, GPTunnelError, PollPolicy
from gptunnel_async._sansio.text import clip, printable, shorten

from .conftest import ScriptedAPI, task_json
from .test_cli_console import SCRIPT, run

ESCAPES = "\x1b[2J\x1b[31mRED\x1b]0;pwned\x07\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\"
BIDI = "\u202eexe.gnp\u202c"
POLICY = PollPolicy(initial=0.01, multiplier=1.0, max_interval=0.01, jitter=0.0, timeout=5.0)


def unprintable(text: str) -> list[str]:
    """The characters of ``text`` a terminal or a log viewer would act on, that a reader
    would not see (format characters: zero-width spaces, tags, the BOM), or that no
    encoding can write (lone surrogates)."""
    return [c for c in text if unicodedata.category(c) in {"Cc", "Cf", "Cs"}]


ANY_TEXT = st.text(st.characters(exclude_categories=()))
"""Any text, lone surrogates included (which JSON's "\\udfff" gives)."""


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("csi\x9b31m", "csi\\x9b31m"),
        ("del\x7f", "del\\x7f"),
        ("nul\x00", "nul\\x00"),
        (BIDI, "\\u202eexe.gnp\\u202c"),
        ("\u2067rli\u2069", "\\u2067rli\\u2069"),
        ("ünïcödé ✓", "ünïcödé ✓"),
        ("line\u2028forged\u2029para", "line\\u2028forged\\u2029para"),
        ("sk-te\u200bst", "sk-te\\u200bst"),  # a zero-width space, invisible in a key
        ("soft\xadhyphen", "soft\\xadhyphen"),
        ("\ufeffbom", "\\ufeffbom"),
        ("tag\U000e0041\U000e0042", "tag\\U000e0041\\U000e0042"),  # "AB", for machines only
        ("lone \udfff surrogate \ud800", "lone \\udfff surrogate \\ud800"),
        ("a pair: \U0001f600", "a pair: \U0001f600"),  # an emoji stays as it is
        ("done\U000e0100\U000e0101", "done\\U000e0100\\U000e0101"),  # variation selectors
        ("a\u3164b\u2800c", "a\\u3164b\\u2800c"),  # letters drawn as nothing
    ],
)
def test_printable_escapes_what_a_terminal_would_obey(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(ANY_TEXT)
def test_printable_text_is_one_line_as_str_splitlines_reads_it(text: str) -> None:
    shown = printable(text)
    assert len(shown.splitlines()) <= 1
    assert unprintable(shown) == []
    shown.encode("utf-8")  # strictly: nothing left that a terminal or a file cannot take


def test_every_format_character_and_surrogate_of_this_python_is_escaped() -> None:
    """The listed format characters against the running Python's Unicode database."""
    hidden = [
        chr(code) for code in range(0x110000) if unicodedata.category(chr(code)) in {"Cf", "Cs"}
    ]
    assert unprintable(printable("".join(hidden))) == []


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_a_value_whose_str_fails_is_named_not_raised() -> None:
    assert clip(Unprintable()) == "<unprintable Unprintable>"


@given(ANY_TEXT, st.integers(2, 500))
def test_a_shortened_text_is_one_printable_line(text: str, limit: int) -> None:
    shown = shorten(text, limit)
    assert len(shown) <= limit
    assert unprintable(shown) == []
    assert "\n" not in shown


@pytest.mark.parametrize("field", ["status", "error", "type", "id"])
async def test_errors_and_log_lines_show_server_controls_escaped(
    api: ScriptedAPI, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    body = task_json(id="t", status="failed", error="e")
    body[field] = ("failed" if field == "status" else "") + ESCAPES + BIDI
    if field == "id":
        body["id"] = "t"
        body["error"] = ESCAPES + BIDI
    api.script(body)
    async with GPTunnelClient("k" * 20, base_url=api.base_url, poll_policy=POLICY) as client:
        with pytest.raises(GPTunnelError) as caught:
            await client.wait_for_result("t", timeout=0.5)
    texts = [str(caught.value)] + [record.getMessage() for record in caplog.records]
    assert [text for text in texts if unprintable(text)] == []


SHOWN = {
    "result": task_json(id="t", status=ESCAPES, type=BIDI, result="http://x/r.png" + ESCAPES),
    "wait": task_json(id="t", status="failed", type=ESCAPES, error=ESCAPES + BIDI),
}


@pytest.mark.skipif(SCRIPT == "gptunnel-async", reason="the console script is not installed")
@pytest.mark.parametrize(("command", "exit_code"), [("result", 0), ("wait", 1)])
async def test_the_command_line_never_prints_server_controls(
    api: ScriptedAPI, command: str, exit_code: int
) -> None:
    api.script(SHOWN[command])
    args = ["--base-url", api.base_url, "--api-key", "k" * 20, "--timeout", "20"]
    code, out, err = await run(command, "t", *args[: 4 if command == "result" else 6])
    assert code == exit_code
    assert "pwned" in out + err  # the text is shown, its controls escaped
    assert unprintable(out.replace("\n", "")) == []
    assert unprintable(err.replace("\n", "")) == []
