"""The SDK's loggers: every line of a logged traceback is printable and bounded."""

from __future__ import annotations

import gc
import io
import itertools
import logging
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async._logging import (
    LOG_TEXT,
    TRACEBACK_CHAIN,
    TRACEBACK_FRAMES,
    TRACEBACK_NOTES,
    bounded_traceback,
    mask_in_logs,
    sdk_logger,
)

HOSTILE = [
    "\x1b[2J\x1b]0;owned\x07",
    "ok\n2026-12-01 12:00:00 INFO forged line",
    "\u202eevil",
    "x" * 50_000,
    "a\rb\u2028c\x85d",
    "",
]

_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def raise_nested(depth: int, text: str) -> None:
    if depth:
        raise_nested(depth - 1, text)
    raise ValueError(text)


def logged(error: BaseException) -> str:
    """What a plain handler writes for ``logger.exception`` of ``error`` on an SDK logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = sdk_logger("gptunnel_async.test_logging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise error
        except BaseException:
            logger.exception("reading task %s failed", "t-1")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("text", HOSTILE)
def test_an_exception_text_is_one_printable_bounded_line(text: str) -> None:
    try:
        raise_nested(3, text)
    except ValueError as exc:
        error = exc
    output = logged(error)
    lines = output.rstrip("\n").split("\n")
    assert lines[0] == "reading task t-1 failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert sum(line.endswith(", in raise_nested") for line in lines) == 4  # frames kept
    assert lines[-1].startswith("ValueError")
    assert not any("forged line" in line and not line.startswith("ValueError") for line in lines)
    for line in lines:
        assert not _UNPRINTABLE.search(line), line
        assert len(line) <= LOG_TEXT + 100


def test_a_chain_is_shown_cause_first_each_text_bounded() -> None:
    try:
        try:
            raise KeyError("\x1b[31m" + "k" * 5000)
        except KeyError as inner:
            raise RuntimeError("outer\nforged") from inner
    except RuntimeError as exc:
        text = bounded_traceback(exc)
    assert text.index("KeyError") < text.index("direct cause") < text.index("RuntimeError")
    assert "RuntimeError: outer forged" in text
    assert "\x1b" not in text
    assert max(map(len, text.split("\n"))) <= LOG_TEXT + 100


def raise_during_handling() -> None:
    try:
        raise OSError("first")
    except OSError:
        raise LookupError("second")  # noqa: B904  (the context is the point)


def test_a_context_is_shown_unless_suppressed() -> None:
    with pytest.raises(LookupError) as caught:
        raise_during_handling()
    assert "During handling" in bounded_traceback(caught.value)
    caught.value.__suppress_context__ = True
    assert "OSError" not in bounded_traceback(caught.value)


def test_a_long_or_looping_chain_and_deep_stack_are_bounded() -> None:
    errors = [ValueError(f"e{n}") for n in range(TRACEBACK_CHAIN + 3)]
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    text = bounded_traceback(errors[0])
    assert text.count("ValueError: e") == TRACEBACK_CHAIN
    loop_a, loop_b = ValueError("a"), ValueError("b")
    loop_a.__cause__, loop_b.__cause__ = loop_b, loop_a
    assert bounded_traceback(loop_a).count("ValueError: ") == 2
    try:
        raise_nested(TRACEBACK_FRAMES * 2, "deep")
    except ValueError as exc:
        deep = bounded_traceback(exc)
    # The innermost frames (format_tb folds the repeated ones into one line).
    assert "Previous line repeated" in deep
    assert deep.count('  File "') <= TRACEBACK_FRAMES
    assert "in test_a_long_or_looping" not in deep
    assert deep.endswith("ValueError: deep")


def test_an_exception_without_a_traceback_is_its_line() -> None:
    assert bounded_traceback(ValueError("plain")) == "ValueError: plain"
    assert bounded_traceback(ValueError()) == "ValueError"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_an_exception_whose_str_fails_is_logged_not_raised() -> None:
    output = logged(Unprintable())
    assert "Unprintable: <unprintable Unprintable>" in output
    assert output.startswith("reading task t-1 failed\nTraceback")


def message(template: str, *args: object) -> str:
    """The text a handler writes for ``template % args`` logged on an SDK logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = sdk_logger("gptunnel_async.test_logging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(template, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().removesuffix("\n")


@pytest.mark.parametrize(
    ("template", "args", "expected"),
    [
        ("retry %d in %.2fs%s", (1, 0.5, " (task abc)"), "retry 1 in 0.50s (task abc)"),
        ("%s|%s", ("a ", "\n b"), "a | b"),
        ("[%s]", ("\t x  y \n",), "[ x y ]"),
        ("[%s]", ("   ",), "[ ]"),
        ("[%s]", ("",), "[]"),
        ("[%s]", ("ok\nforged",), "[ok forged]"),
    ],
)
def test_whitespace_around_an_argument_stays_one_space(
    template: str, args: tuple[object, ...], expected: str
) -> None:
    assert message(template, *args) == expected


@given(st.text(st.characters(exclude_categories=()), max_size=2 * LOG_TEXT))
def test_an_argument_stays_one_printable_bounded_line(text: str) -> None:
    shown = message("%s", text)
    assert len(shown) <= LOG_TEXT
    assert not _UNPRINTABLE.search(shown)
    assert "\n" not in shown


def test_notes_are_shown_below_their_exception_each_bounded() -> None:
    """``add_note`` (PEP 678) lines, such as a wait's naming of its task, are shown as
    ``traceback`` shows them; server text in one can neither forge a line nor flood."""
    inner, outer = KeyError("inner"), RuntimeError("outer")
    outer.__cause__ = inner
    inner.add_note("about the inner one")
    outer.add_note("raised by the wait for faceswap task 't-1'")
    outer.add_note("\x1b[31mforged\nline" + "x" * 5000)
    for extra in range(TRACEBACK_NOTES):
        outer.add_note(f"extra {extra}")
    lines = bounded_traceback(outer).split("\n")
    assert lines[lines.index("KeyError: 'inner'") + 1] == "about the inner one"
    at = lines.index("RuntimeError: outer")
    assert lines[at + 1] == "raised by the wait for faceswap task 't-1'"
    assert lines[at + 2].startswith("\\x1b[31mforged line")
    assert len(lines[at + 2]) <= LOG_TEXT
    assert lines[at + 3 :] == [f"extra {n}" for n in range(TRACEBACK_NOTES - 2)]
    odd = ValueError("odd")
    odd.__notes__ = "not a list"  # type: ignore[attr-defined]
    assert bounded_traceback(odd) == "ValueError: odd"


class _Holder:
    """Holds a key, as a client's transport does."""

    def __init__(self, secret: str) -> None:
        self.secret = secret


KEY = f"{uuid.uuid4().hex}{uuid.uuid4().hex}"
"""Unlike any other key a client of another test may still hold alive: a mask hides
every run of 8 characters of its key, so a shared prefix (``sk-live-``) would be
masked by that other client's and the last check below would fail."""


@pytest.mark.parametrize(
    ("template", "args"),
    [
        ("fleet: task %r set aside as a dead letter: %s", ("t-1", f"its family: '{KEY}'")),
        ("watcher: reading task %s failed again", (KEY.upper(),)),  # any case
        ("watcher: %s", (ValueError(f"stored: {KEY}"),)),
        ("%s", (("x" * (LOG_TEXT - 10)) + KEY,)),  # cut through: no piece of it shows
        (f"a message made with an f-string: {KEY}", ()),
    ],
)
def test_a_live_client_s_key_is_masked_in_every_sdk_log_line(
    template: str, args: tuple[object, ...]
) -> None:
    """A fleet's store holds no key, yet logs what another process stored (a dead
    letter's reason quoting a record's family, a task id read from the schedule): a key
    that a hand edit or a hostile write put there went into the log as it was."""
    holder = _Holder(KEY)
    mask_in_logs(holder)
    shown = message(template, *args)
    assert KEY[:8] not in shown.lower() and KEY[-8:] not in shown
    del holder
    gc.collect()
    assert KEY in message("%s", KEY)  # only while the holder lives


def test_a_live_client_s_key_is_masked_in_a_logged_traceback() -> None:
    holder = _Holder(KEY)
    mask_in_logs(holder)
    shown = logged(ValueError(f"stored: {KEY}"))
    assert KEY not in shown and "ValueError: stored: ***" in shown
    del holder
