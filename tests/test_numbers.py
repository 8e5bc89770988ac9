"""Numbers read from text another party wrote are read strictly, in one place: headers,
API fields sent as text, the fleet's stored fields, command-line arguments.

``int()`` and ``float()`` take ``"1_000"``, whitespace, digits of any script, ``"+5"``,
``"nan"``, ``"inf"`` and ``"1e400"``; none of these is a number in any format the SDK
reads, and each is refused (a typed error) or falls back as documented.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gptunnel_async import (
    APIConnectionError,
    ConfigurationError,
    GPTunnelClient,
    MediaTask,
    PollPolicy,
    Task,
)
from gptunnel_async._cli_families import reading_every
from gptunnel_async._sansio.numbers import argument_decimal, decimal, digits, is_digits
from gptunnel_async._sansio.responses import decode_media_task
from gptunnel_async._sansio.retries import parse_retry_after
from gptunnel_async._sansio.waiting import WaitState
from gptunnel_async.cli import _fault_spec, _port_number, _seconds, _task_spec
from gptunnel_async.errors import APIError, ResponseDecodeError, StoreDataError
from gptunnel_async.fleet._decode import failures, number
from gptunnel_async.fleet._redis_store import _due_in
from gptunnel_async.models import converter

from .conftest import API_KEY, task_json

ARABIC_30 = "\u0663\u0660"
FULLWIDTH_30 = "\uff13\uff10"
DEVANAGARI_5 = "\u096b"
SUPERSCRIPT_2 = "\u00b2"

LENIENT_ONLY = [
    "1_000",
    " 30",
    "30 ",
    "\t30",
    "30\n",
    "\u00a030",  # a no-break space: str.strip() and float() drop it
    "\u200330",
    ARABIC_30,
    FULLWIDTH_30,
    DEVANAGARI_5,
    "+5",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-Infinity",
    "1e400",
    "-1e400",
    "0x10",
    ".5",
    "5.",
    "1e",
    "",
    "-",
]
"""Texts Python's ``int()`` or ``float()`` reads (or nearly), which are no number here."""


def _json_number(text: str) -> bool:
    return re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", text) is not None


# -- the helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("7", 7), ("007", 7), ("65535", 65535), ("9" * 18, 10**18 - 1)],
)
def test_digits_reads_ascii_digits(text: str, expected: int) -> None:
    assert is_digits(text)
    assert digits(text) == expected


@pytest.mark.parametrize("text", [*LENIENT_ONLY, "-5", "1.0", "1e3", SUPERSCRIPT_2, "9" * 19])
def test_digits_refuses_anything_else(text: str) -> None:
    assert digits(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50", 50.0),
        ("-1.5", -1.5),
        ("2e3", 2000.0),
        ("2E-3", 0.002),
        ("1.7e+09", 1.7e9),
        ("1e-400", 0.0),
        ("00.50", 0.5),
        ("1" + "0" * 308, 1e308),
    ],
)
def test_decimal_reads_a_json_number_s_text(text: str, expected: float) -> None:
    assert decimal(text) == expected


@pytest.mark.parametrize("text", LENIENT_ONLY)
def test_decimal_refuses_what_only_float_reads(text: str) -> None:
    assert decimal(text) is None


NUMBER_LIKE = st.lists(
    st.sampled_from(
        [
            *"0123456789+-._eE \t\n\u00a0",
            *(ARABIC_30, FULLWIDTH_30, DEVANAGARI_5, SUPERSCRIPT_2),
            *("nan", "inf", "Infinity"),
        ]
    ),
    max_size=12,
).map("".join)
"""Text near a number: every way ``int()``/``float()`` are lenient, mixed."""


@given(NUMBER_LIKE | st.text(max_size=12))
@example("1_0")
@example(ARABIC_30)
@example(" 1")
@example("1e400")
@example("nan")
def test_decimal_is_float_on_json_numbers_and_none_on_the_rest(text: str) -> None:
    found = decimal(text)
    if not _json_number(text):
        assert found is None
        return
    as_float = float(text)
    assert found == (as_float if math.isfinite(as_float) else None)


@given(NUMBER_LIKE | st.text(max_size=12))
def test_digits_is_int_on_ascii_digits_and_none_on_the_rest(text: str) -> None:
    found = digits(text)
    if re.fullmatch(r"[0-9]{1,18}", text) is None:
        assert found is None
    else:
        assert found == int(text)


# -- headers: Retry-After (RFC 9110 10.2.3), Content-Length ------------------------------

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 7\t", 7.0),  # optional whitespace around a field value
        ("007", 7.0),
        ("Tue, 24 Nov 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Tuesday, 24-Nov-26 12:00:30 GMT", 30.0),  # RFC 850
        ("Tue Nov 24 12:00:30 2026", 30.0),  # asctime
        ("Tue Nov  3 12:00:30 2026", 0.0),  # in the past
        ("Tue Dec 01 12:00:30 2026", 7 * 86400 + 30.0),  # asctime's date3: 2DIGIT too
        ("Tue Dec  1 12:00:30 2026", 7 * 86400 + 30.0),  # or SP DIGIT
        ("Tue, 24 Nov 2026 12:00:60 GMT", 60.0),  # a leap second (RFC 9110 5.6.7)
        ("Tue Nov 24 12:00:60 2026", 60.0),
        ("Tue, 24 Nov 2026 11:00:00 GMT", 0.0),  # in the past: no pause
    ],
)
def test_retry_after_reads_delta_seconds_and_http_dates(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    "header",
    [
        *[text for text in LENIENT_ONLY if text.strip(" \t") not in ("", "30")],
        "1.5",  # delta-seconds are whole seconds
        "-5",
        "1e3",
        "30\u00a0",
        "Tue, 31 Feb 2026 12:00:30 GMT",  # no such day
        "Tue, 24 Nov 2026 25:00:00 GMT",
        "Tue, 24 Nov 2026 12:00:61 GMT",  # no second 61, leap or not
        "Tue Dec 1 12:00:30 2026",  # date3 is 2DIGIT or SP DIGIT
        "24 Nov 2026 12:00:30",  # an RFC 2822 date, not an HTTP-date
        "Tue, 24 Nov 2026 12:00:30 +0300",
        f"Tue, {ARABIC_30[0]}4 Nov 2026 12:00:30 GMT",
        "soon",
    ],
)
def test_an_unreadable_retry_after_is_none_never_a_number(header: str) -> None:
    """Ignored, as RFC 9110 leaves a recipient to do: ``"1_000"`` was a pause of the
    whole cap (60 s), ``"٣٠"`` one of 30 s."""
    assert parse_retry_after(header, now=NOW) is None


@given(NUMBER_LIKE)
@example("1_000")
@example(ARABIC_30)
@example(FULLWIDTH_30)
@example("+5")
@example("1e400")
def test_retry_after_is_a_number_only_for_delta_seconds(header: str) -> None:
    found = parse_retry_after(header, now=NOW)
    value = header.strip(" \t")
    if re.fullmatch(r"[0-9]+", value):
        assert found == min(float(value), sys.float_info.max)
    else:
        assert found is None


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1)))
def test_any_imf_fixdate_is_read(when: datetime) -> None:
    header = format_datetime(when.replace(tzinfo=UTC, microsecond=0), usegmt=True)
    found = parse_retry_after(header, now=NOW)
    assert found == max(0.0, (when.replace(tzinfo=UTC, microsecond=0) - NOW).total_seconds())


@pytest.mark.parametrize("length", ["1_0", ARABIC_30, FULLWIDTH_30, "+10", "1e1", "-1"])
async def test_a_content_length_that_is_not_digits_is_a_connection_error(length: str) -> None:
    """RFC 9110's ``1*DIGIT``: aiohttp's parser (C and pure Python alike) refuses anything
    else, and the SDK reports it as the typed error of a broken answer, not a number
    read from it. Pinned here, on a real socket, since nothing in the SDK reads it again."""
    body = json.dumps(task_json(status="done", percent=100)).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}"
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with GPTunnelClient(
            api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        ) as client:
            with pytest.raises(APIConnectionError):
                await client.get_result("t")
    finally:
        server.close()
        await server.wait_closed()


# -- API fields sent as text --------------------------------------------------------


@given(NUMBER_LIKE)
@example("42")
@example("4_2")
@example(" 42")
@example(ARABIC_30)
@example("1e400")
def test_a_percent_sent_as_text_is_read_only_when_it_is_a_number_s_text(text: str) -> None:
    task = converter.structure(task_json(percent=text), Task)
    found = decimal(text)
    assert task.percent == (0 if found is None else min(100, max(0, round(found))))


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("1700000000", 1700000000),
        ("1.7e9", 1700000000),
        ("2026-11-24T12:00:00Z", int(NOW.timestamp())),
        (1700000000, 1700000000),
        (" 1700000000", None),
        ("1_700_000_000", None),
        ("\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10", None),
        ("1e400", None),
        ("nan", None),
        (10**400, None),  # was an OverflowError from math.isfinite, caught late
        ("\uff12\uff10\uff12\uff16-11-24", None),
    ],
)
def test_a_media_task_s_created_at(sent: Any, expected: int | None) -> None:
    task = converter.structure({"id": "m1", "status": "idle", "created_at": sent}, MediaTask)
    assert task.created_at == expected


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("0", None),
        ("-0", None),
        ("6", APIError),
        ("-1", APIError),
        (" 6", ResponseDecodeError),
        ("0 ", ResponseDecodeError),
        ("0_0", ResponseDecodeError),
        ("\u0660", ResponseDecodeError),  # Arabic-Indic 0: int() reads it as 0, a success
        ("\uff10", ResponseDecodeError),
        ("+0", ResponseDecodeError),
        ("", ResponseDecodeError),
    ],
)
def test_a_media_code_sent_as_text(code: str, error: type[Exception] | None) -> None:
    body = f'{{"code": "{code}", "id": "m1", "status": "idle"}}'.encode()
    if error is None:
        assert decode_media_task(body, 200).id == "m1"
    else:
        with pytest.raises(error):
            decode_media_task(body, 200)


# -- the fleet's stored fields --------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(b"1700000000.25", 1700000000.25), ("1e+20", 1e20), (b"-3", -3.0), (5, 5.0)],
)
def test_a_stored_number_as_redis_writes_one(stored: Any, expected: float) -> None:
    assert number(stored, "the deadline") == expected


@given(NUMBER_LIKE.filter(lambda text: decimal(text) is None))
@example("1_000")
@example(f"{ARABIC_30}")
@example(" 5")
@example("inf")
@example("1e400")
def test_a_stored_number_that_is_no_number_s_text_is_a_store_data_error(text: str) -> None:
    with pytest.raises(StoreDataError, match="the deadline must be a finite number"):
        number(text.encode(), "the deadline")


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(b"3", 3), (b"0", 0), (None, 0), (b" 3", 0), (b"3_0", 0), (ARABIC_30.encode(), 0), (b"+3", 0)],
)
def test_a_stored_count_of_failures(stored: bytes | None, expected: int) -> None:
    assert failures(stored) == expected


@pytest.mark.parametrize(
    ("reply", "seconds"),
    [
        *((b"0.5", 0.5), (b"0", 0.0), (b"1e+20", 1e20), (b"", None), (None, None)),
        *((b"inf", None), (b" 1", None), (b"1_0", None), (ARABIC_30.encode(), None)),
        (b"-1", None),
    ],
)
def test_the_time_to_the_next_due_task_from_the_claim_script(
    reply: bytes | None, seconds: float | None
) -> None:
    """Unreadable, it is the watcher's idle poll (``None``), never an error that would
    stop the claiming loop."""
    assert _due_in(reply) == seconds


SAVED_STATE = WaitState.start("t-1", PollPolicy(timeout=None), 0.0).to_json()


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("started_at", "0"),
        ("due_at", " 0"),
        ("reads", "1_0"),
        ("percent", ARABIC_30),
        ("seed", "1e3"),
        ("due_at", "nan"),
    ],
)
def test_a_saved_wait_state_takes_no_number_as_text(field: str, text: str) -> None:
    """A saved state is :meth:`WaitState.to_json`'s, which writes numbers as numbers:
    text in their place was written by something else, and is refused, not read."""
    with pytest.raises(ConfigurationError, match="not a saved wait state"):
        WaitState.from_json({**SAVED_STATE, field: text})
    WaitState.from_json(json.loads(json.dumps(SAVED_STATE)))  # as it was: read


# -- command-line arguments -----------------------------------------------------------


@pytest.mark.parametrize("text", ["8080", "0"])
def test_a_port_argument(text: str) -> None:
    assert _port_number(text) == int(text)


@pytest.mark.parametrize("text", ["8_080", " 8080", "\u0668\u0660\u0668\u0660", "+80", "65536"])
def test_a_port_argument_that_int_reads_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="a port is a whole number"):
        _port_number(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2", 2.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e1", 10.0), ("2.5E-1", 0.25)],
)
def test_a_seconds_argument_is_a_command_line_s_decimal(text: str, seconds: float) -> None:
    """``.5`` and ``5.`` are how a command line writes seconds (``sleep .5``): not JSON's
    grammar, but no lenient reading either; they were refused as 'not a number'."""
    assert argument_decimal(text) == seconds
    assert _seconds(text) == seconds
    assert reading_every(text).max_interval == seconds
    assert _task_spec(f"t1={text}")["duration"] == seconds


@given(st.text(st.sampled_from("0123456789.eE+- _"), max_size=8))
def test_an_argument_decimal_is_what_float_reads_of_its_grammar_alone(text: str) -> None:
    expected = (
        float(text)
        if re.fullmatch(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", text)
        else None
    )
    if expected is not None and not math.isfinite(expected):
        expected = None  # "1e400": too large for a float, no number of seconds
    assert argument_decimal(text) == expected


@pytest.mark.parametrize(
    "text", ["1_0", " 5", FULLWIDTH_30, "nan", "inf", "1e400", "+5", ".", "-1", "5.e", "0x5"]
)
def test_a_seconds_argument_that_float_reads_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _seconds(text)
    with pytest.raises(argparse.ArgumentTypeError):
        reading_every(text)
    with pytest.raises(ValueError, match="SECONDS is a number"):
        _task_spec(f"t1={text}")


@pytest.mark.parametrize("text", ["5_03", f"{FULLWIDTH_30}3", "503x2_0", "503x-1", "+503", " 503"])
def test_a_fault_argument_that_int_reads_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="a fault is STATUS or STATUSxN"):
        _fault_spec(text)


def test_good_arguments_still_read() -> None:
    assert _seconds("2.5") == 2.5
    assert reading_every("3").max_interval == 3.0
    assert _task_spec("t1=1.5:boom") == {"id": "t1", "duration": 1.5, "error": "boom"}
    assert _fault_spec("503X2") == {"kind": "fail", "status": 503, "times": 2}
