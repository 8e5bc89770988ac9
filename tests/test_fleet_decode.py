"""Decoding what the fleet's store holds (pure, no sockets): a good value comes back as it
was written; any malformed one — whatever its shape — is a StoreDataError, never another
exception."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    GPTunnelError,
    PollPolicy,
    ResponseDecodeError,
    ServerError,
    Task,
    WaitTimeoutError,
)
from gptunnel_async._sansio.waiting import WaitState
from gptunnel_async.errors import StoreDataError
from gptunnel_async.fleet import FleetProgress
from gptunnel_async.fleet._decode import (
    Finished,
    last_read,
    notice,
    number,
    outcome,
    outcome_kind,
    read_error,
    record,
    schedule,
)
from gptunnel_async.fleet._records import FAMILIES, MAX_DEPTH, Outcome, ReadError, WatchRecord
from gptunnel_async.fleet._redis_store import _reclaimed
from gptunnel_async.models import converter

from .conftest import task_json

GOOD_RECORD = WatchRecord("media", {"chat": 1}, 60.0).dumps()
GOOD_TASK = converter.structure(task_json(status="done", percent=100), Task)
GOOD_OUTCOME = Outcome("done", GOOD_TASK).dumps()
GOOD_SCHEDULE = json.dumps(WaitState.start("t-1", PollPolicy(timeout=None), 0.0).to_json())
GOOD_PROGRESS = FleetProgress("t-1", "running", 40, {"chat": 1}, 12.5).dumps()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _mutations(good: str) -> st.SearchStrategy[Any]:
    """A good JSON object with keys dropped, replaced by any JSON value, or added."""
    fields = json.loads(good)
    return st.builds(
        lambda dropped, replaced, added: json.dumps(
            {k: v for k, v in {**fields, **replaced, **added}.items() if k not in dropped}
        ),
        st.sets(st.sampled_from(sorted(fields))),
        st.dictionaries(st.sampled_from(sorted(fields)), json_values, max_size=3),
        st.dictionaries(st.text(max_size=8), json_values, max_size=2),
    )


def stored(good: str) -> st.SearchStrategy[Any]:
    """Anything a store may hold where ``good`` belongs: missing, bytes (UTF-8 or not),
    any text, any JSON, and ``good`` itself altered field by field or cut short."""
    is_object = isinstance(json.loads(good), dict)
    altered = [_mutations(good), _mutations(good).map(str.encode)] if is_object else []
    return st.one_of(
        st.none(),
        st.binary(max_size=64),
        st.text(max_size=64),
        json_values.map(lambda value: json.dumps(value)),
        *altered,
        st.integers(0, len(good)).map(lambda cut: good[:cut]),
        st.integers(0, len(good)).map(lambda cut: good.encode()[:cut] + b"\xff\xfe"),
        st.builds(lambda value: value, st.sampled_from([1, 2.5, [], {}, object()])),
    )


def _only_typed(decode: Callable[[Any], Any], value: Any) -> Any:
    try:
        return decode(value)
    except StoreDataError as exc:
        error = exc
    assert isinstance(error, GPTunnelError)
    assert 0 < len(str(error)) < 1000
    return error


@settings(max_examples=300)
@given(value=stored(GOOD_RECORD), deadline=stored("1234.5") | st.floats())
def test_any_stored_record_decodes_or_is_a_store_data_error(value: Any, deadline: Any) -> None:
    decoded = _only_typed(lambda v: record(v, deadline), value)
    if isinstance(decoded, WatchRecord):
        assert decoded.family in FAMILIES
        assert math.isfinite(decoded.timeout) and decoded.timeout >= 0
        assert math.isfinite(decoded.deadline)


@settings(max_examples=300)
@given(value=stored(GOOD_OUTCOME))
def test_any_stored_outcome_decodes_or_is_a_store_data_error(value: Any) -> None:
    decoded = _only_typed(outcome, value)
    if isinstance(decoded, Outcome):
        assert decoded.kind in ("done", "failed", "expired")
        assert decoded.kind != "done" or decoded.task is not None
        assert math.isfinite(decoded.timeout)


@settings(max_examples=200)
@given(value=stored(GOOD_SCHEDULE))
def test_any_stored_pacing_decodes_or_is_a_store_data_error(value: Any) -> None:
    decoded = _only_typed(lambda v: schedule(v, "t-1"), value)
    assert isinstance(decoded, WaitState | StoreDataError)


@settings(max_examples=300)
@given(value=stored(GOOD_PROGRESS) | stored('{"kind":"finished","task_id":"t-1"}'))
def test_any_notice_decodes_is_skipped_or_is_a_store_data_error(value: Any) -> None:
    decoded = _only_typed(notice, value)
    assert decoded is None or isinstance(decoded, FleetProgress | Finished | StoreDataError)


@settings(max_examples=100)
@given(depth=st.integers(0, 3000), objects=st.lists(st.booleans(), min_size=1, max_size=8))
def test_metadata_read_back_nests_no_deeper_than_watch_takes(
    depth: int, objects: list[bool]
) -> None:
    """JSON parses a few hundred levels; every later write of such metadata (a progress
    notice, a listener keeping it, a handler's own) then failed with RecursionError
    wherever its stack ran deeper than the reader's."""
    nested = "null"
    for level in range(depth):
        nested = f'{{"k":{nested}}}' if objects[level % len(objects)] else f"[{nested}]"
    written = f'{{"family":"faceswap","metadata":{nested},"timeout":9}}'
    published = f'{{"kind":"progress","task_id":"t","status":"s","percent":1,"metadata":{nested}}}'
    for decoded in (_only_typed(lambda v: record(v, "1"), written), _only_typed(notice, published)):
        if depth <= MAX_DEPTH:  # what watch() takes
            assert not isinstance(decoded, StoreDataError)
        elif depth > MAX_DEPTH + 1:
            assert isinstance(decoded, StoreDataError)  # by the check, or by the parser


def test_good_values_come_back_as_they_were_written() -> None:
    assert record(GOOD_RECORD, b"1234.5") == WatchRecord("media", {"chat": 1}, 60.0, 1234.5)
    assert record(GOOD_RECORD.encode(), 7) == WatchRecord("media", {"chat": 1}, 60.0, 7.0)
    assert outcome(GOOD_OUTCOME.encode()) == Outcome("done", GOOD_TASK)
    assert outcome(Outcome("failed", None).dumps()) == Outcome("failed", None)
    saved = WaitState.from_json(json.loads(GOOD_SCHEDULE))
    assert schedule(GOOD_SCHEDULE.encode(), "t-1") == saved
    with pytest.raises(StoreDataError, match="another task's"):
        schedule(GOOD_SCHEDULE, "t-2")
    assert notice(GOOD_PROGRESS) == FleetProgress("t-1", "running", 40, {"chat": 1}, 12.5)
    assert notice(b'{"kind":"finished","task_id":"t-9"}') == Finished("t-9")
    assert notice('{"kind":"from-a-newer-version","task_id":"t-9"}') is None


@pytest.mark.parametrize(
    ("said", "read"),
    [
        (', "outcome": "done"', "done"),
        (', "outcome": "expired"', "expired"),
        ("", None),  # an older version's notice
        (', "outcome": ""', None),  # a store that could not tell
        (', "outcome": "exploded"', None),
        (', "outcome": 3', None),
        (', "outcome": ["done"]', None),
    ],
)
def test_a_finish_notice_s_outcome_is_one_this_version_knows_or_none(
    said: str, read: str | None
) -> None:
    assert notice(f'{{"kind": "finished", "task_id": "t-9"{said}}}') == Finished("t-9", read)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        (Outcome("done", GOOD_TASK).dumps(), "done"),
        (Outcome("error", None).dumps(), "error"),
        ('{"kind": "exploded"}', ""),
        ("[1, 2]", ""),
        ("not json", ""),
    ],
)
def test_a_finish_notice_names_the_outcome_s_kind_if_it_is_one(written: str, kind: str) -> None:
    assert outcome_kind(written) == kind


def _record(**changes: Any) -> str:
    fields = {"family": "faceswap", "metadata": None, "timeout": 60.0, **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not _DROP})


def _outcome(**changes: Any) -> str:
    fields = json.loads(GOOD_OUTCOME) | changes
    return json.dumps({k: v for k, v in fields.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    ("value", "deadline", "match"),
    [
        (_record(timeout=_DROP), "1", "has no 'timeout'"),
        (_record(metadata=_DROP), "1", "has no 'metadata'"),
        (_record(family="video"), "1", "family must be one of"),
        (_record(family=None), "1", "'family' has the wrong type"),
        (_record(timeout="60"), "1", "'timeout' has the wrong type"),
        (_record(timeout=True), "1", "'timeout' has the wrong type"),
        (_record(timeout=-1), "1", "timeout must be a finite number >= 0"),
        (_record(), "nan", "the deadline must be a finite number"),
        (_record(), "inf", "the deadline must be a finite number"),
        (_record(), "soon", "the deadline must be a finite number"),
        (_record(), None, "the deadline is missing"),
        (_record(), b"\xff", "the deadline is not UTF-8"),
        ("not json", "1", "record is malformed .JSONDecodeError"),
        ("[1, 2]", "1", "record is not a JSON object"),
        (b'{"family": "faceswap\xff"}', "1", "record is not UTF-8"),
        ("[" * 30_000 + "]" * 30_000, "1", "record is malformed .RecursionError"),
        ('{"pad": "' + "x" * 70_000 + '"}', "1", "record is 70011 long, over the 65536 bytes"),
        (None, "1", "record is missing"),
    ],
)
def test_odd_records_say_what_is_wrong(value: Any, deadline: Any, match: str) -> None:
    with pytest.raises(StoreDataError, match=match):
        record(value, deadline)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (_outcome(model="VideoTask"), "unknown model: 'VideoTask'"),
        (_outcome(model=_DROP), "has no 'model'"),
        (_outcome(kind="cancelled"), "kind must be one of"),
        (_outcome(task=None), "'done' without its task"),
        (_outcome(task=[1]), "'task' has the wrong type"),
        (_outcome(task={"status": 5}), "the outcome's task is malformed"),
        (_outcome(timeout=1e999), "timeout must be a finite number"),
        (_outcome(timeout=_DROP), "has no 'timeout'"),
    ],
)
def test_odd_outcomes_say_what_is_wrong(value: str, match: str) -> None:
    with pytest.raises(StoreDataError, match=match):
        outcome(value)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("not json", "malformed"),
        ("[1,2]", "not a JSON object"),
        ('{"kind": "progress", "task_id": "x"}', "has no 'status'"),
        ('{"kind": "progress", "task_id": "x", "status": "r", "percent": "5"}', "'percent'"),
        ('{"kind": "progress", "task_id": "x", "status": "r", "percent": 101}', "0 to 100"),
        ('{"kind": "progress", "task_id": "x", "status": "r", "percent": -1}', "0 to 100"),
        (
            '{"kind": "progress", "task_id": "x", "status": "r", "percent": 1' + "0" * 300 + "}",
            "0 to 100",
        ),
        ('{"kind": "finished"}', "has no 'task_id'"),
        (b"\xff", "not UTF-8"),
        ('{"kind": "finished", "task_id": "x", "pad": "' + "x" * 70_000 + '"}', "over the 65536"),
    ],
)
def test_odd_notices_say_what_is_wrong(value: Any, match: str) -> None:
    with pytest.raises(StoreDataError, match=match):
        notice(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"1.5", 1.5), ("2", 2.0), (3, 3.0), (0.25, 0.25)],
)
def test_numbers_come_from_text_or_json(value: Any, expected: float) -> None:
    assert number(value, "x") == expected


@pytest.mark.parametrize("value", [b"nan", "inf", "-inf", True, None, 10**400, "1e999", [1]])
def test_numbers_that_are_not_finite_are_refused(value: Any) -> None:
    with pytest.raises(StoreDataError, match="x"):
        number(value, "x")


READ_ERRORS: list[GPTunnelError] = [
    APIConnectionError("GET /v1/faceswap/result failed: Cannot connect to host"),
    APITimeoutError("GET /v1/faceswap/result timed out after 30s"),
    APITimeoutError("408: Request Timeout", status_code=408),
    ServerError("overloaded", status_code=503, type="server_error", retry_after=2.5),
    AuthenticationError("bad key ***", status_code=401),
    ResponseDecodeError("not JSON", status_code=200, body="<html>proxy</html>"),
]


@pytest.mark.parametrize("error", READ_ERRORS, ids=lambda error: type(error).__name__)
def test_a_read_error_comes_back_from_the_store_as_it_was(error: GPTunnelError) -> None:
    kept = Outcome("expired", None, 9.0, ReadError.of(error))
    back = outcome(kept.dumps()).error
    assert back is not None
    rebuilt = back.rebuilt()
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    assert set(vars(rebuilt)) == set(vars(error))  # every attribute its class documents
    for name in ("status_code", "type", "retry_after", "body", "message"):
        assert getattr(rebuilt, name, None) == getattr(error, name, None)
    if isinstance(rebuilt, APIError):
        assert rebuilt.issues == ()


ODD_READ_ERRORS: list[Any] = [
    None,
    "ServerError",
    [],
    {"kind": "ServerError"},
    {"kind": 3, "message": "m", "attributes": {}},
    {"kind": "ServerError", "message": None, "attributes": {}},
    {"kind": "ServerError", "message": "m", "attributes": []},
]


@pytest.mark.parametrize("stored", ODD_READ_ERRORS)
def test_an_odd_read_error_is_dropped_not_a_dead_letter(stored: Any) -> None:
    assert read_error(stored) is None
    kept = json.dumps(
        {"kind": "expired", "model": None, "task": None, "timeout": 1, "error": stored}
    )
    assert outcome(kept).error is None  # the outcome itself still reads


HOSTILE_ATTRIBUTES: dict[str, Any] = {
    "status_code": "401; DROP",
    "retry_after": math.nan,
    "type": 5,
    "param": None,
    "code": "c" * 5000,
    "args": 5,
    "add_note": "shadowed",
    "characters_written": "x",
    "__class__": "evil",
    "issues": [1, 2],
}


@pytest.mark.parametrize(
    "attributes",
    [
        {"retry_after": 10**400, "status_code": 10**4000},
        {"retry_after": -1, "status_code": -5},
        {"retry_after": "60", "status_code": 503.0},
    ],
    ids=["beyond the float range", "negative", "text and a float"],
)
def test_stored_numbers_out_of_range_are_dropped_not_raised(attributes: dict[str, Any]) -> None:
    stored = {"kind": "RateLimitError", "message": "slow down", "attributes": attributes}
    found = read_error(stored)
    assert found is not None
    rebuilt = found.rebuilt()
    assert (rebuilt.status_code, rebuilt.retry_after) == (0, None)  # type: ignore[attr-defined]
    document = {"kind": "expired", "model": None, "task": None, "timeout": 1, "error": stored}
    assert outcome(json.dumps(document)).error == found
    saved = {"last": {"model": None, "task": None, "error": stored}}
    assert last_read(json.dumps(saved)).error == found


@pytest.mark.parametrize(
    ("kind", "cls", "kept"),
    [
        ("ServerError", ServerError, {"status_code": 0, "retry_after": None, "type": None}),
        ("ResponseDecodeError", ResponseDecodeError, {"status_code": None, "body": ""}),
        ("APIConnectionError", APIConnectionError, {}),
        ("WaitTimeoutError", GPTunnelError, {}),  # not a read's error: the base
        ("TaskFailedError", GPTunnelError, {}),
        ("__loader__", GPTunnelError, {}),
    ],
)
def test_a_stored_read_error_keeps_only_what_its_class_documents_of_the_right_type(
    kind: str, cls: type[GPTunnelError], kept: dict[str, Any]
) -> None:
    stored = {"kind": kind, "message": "x" * 5000 + "\x1b[2J", "attributes": HOSTILE_ATTRIBUTES}
    found = read_error(stored)
    assert found is not None
    rebuilt = found.rebuilt()
    assert type(rebuilt) is cls
    for name, value in kept.items():
        assert getattr(rebuilt, name) == value
    if isinstance(rebuilt, APIError):
        assert rebuilt.code is not None and len(rebuilt.code) <= 2000
        assert rebuilt.issues == () and rebuilt.param is None
    assert "add_note" not in vars(rebuilt) and "args" not in vars(rebuilt)
    assert len(str(rebuilt)) <= 2000 and "\x1b" not in str(rebuilt)
    back = pickle.loads(pickle.dumps(rebuilt))
    assert (type(back), str(back), vars(back)) == (cls, str(rebuilt), vars(rebuilt))
    copy.deepcopy(rebuilt).add_note("still an exception")


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.none(), st.integers(), st.text(), st.floats(), st.lists(st.integers())),
        max_size=6,
    ),
    st.text(max_size=40),
    st.text(max_size=200),
)
def test_any_stored_read_error_rebuilds_into_an_sdk_error(
    attributes: dict[str, Any], kind: str, message: str
) -> None:
    found = read_error({"kind": kind, "message": message, "attributes": attributes})
    assert found is not None
    rebuilt = found.rebuilt()
    assert isinstance(rebuilt, GPTunnelError)
    str(rebuilt), repr(rebuilt)  # both render
    WaitTimeoutError("t-1", 5.0, None, rebuilt)  # and a timeout can name it
    assert str(pickle.loads(pickle.dumps(rebuilt))) == str(rebuilt)


@pytest.mark.parametrize(
    ("reply", "taken", "gone"),
    [
        ([b"0-0", [], []], [], []),
        ([b"0-0", [(b"1-0", {b"task": b"t1"})], [b"2-0"]], [(b"1-0", {b"task": b"t1"})], [b"2-0"]),
        # Redis 6.2: no list of deleted ids; a deleted entry in place, as nil
        ([b"0-0", [(None, None), (b"1-0", {b"task": b"t1"})]], [(b"1-0", {b"task": b"t1"})], []),
        ([b"0-0", [(None, None)]], [], []),
    ],
    ids=["nothing", "redis 7", "redis 6.2 with a deleted entry", "redis 6.2, only deleted"],
)
def test_an_autoclaim_reply_gives_the_entries_taken_over_and_the_ids_deleted(
    reply: list[Any], taken: list[Any], gone: list[Any]
) -> None:
    """A deleted pending entry is no delivery: on Redis 6.2 it came as ``(None, None)``
    and every take failed on it."""
    assert _reclaimed(reply) == (taken, gone)
