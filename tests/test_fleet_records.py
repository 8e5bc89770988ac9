"""What the fleet saves: wait states, records and outcomes, all surviving JSON."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import (
    GPTunnelError,
    NotFoundError,
    PollPolicy,
    ServerError,
    Task,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async._sansio.waiting import ReadAt, WaitState
from gptunnel_async.fleet import Delivery, FleetProgress, _decode
from gptunnel_async.fleet._records import Outcome, OutcomeKind, WatchRecord
from gptunnel_async.fleet._watcher import (
    PROGRESS_REMEMBERED,
    PROGRESS_REMEMBERED_BYTES,
    _LastNotices,
    _until,
)
from gptunnel_async.models import converter

from .conftest import task_json

POLICY = PollPolicy(initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.2, timeout=None)


def test_a_saved_wait_state_decides_as_the_one_that_never_left_the_process() -> None:
    live = WaitState.start("t-1", POLICY, 0.0, random.Random(3))
    moved = live
    reads = [(0.0, 0), (1.0, 0), (3.0, 10), (7.0, 30), (11.0, 50), (15.0, 70)]
    for now, percent in reads:
        task = Task(id="t-1", status="running", percent=percent)
        live, expected = live.observe(task, now)
        moved = WaitState.from_json(json.loads(json.dumps(moved.to_json())))
        moved, decision = moved.observe(task, now)
        assert decision == expected
    assert moved == live


NOW = 1.7e9
"""The store's clock (Redis ``TIME``) at a claim."""

EVERY_3S = PollPolicy(initial=3.0, max_interval=3.0, jitter=0.0, strategy="exponential")


@pytest.mark.parametrize(
    ("timeout", "saved_start", "lead"),
    [
        (2.0, NOW, 0.2),  # saved at the watch's start: a tenth of its timeout
        (2.0, NOW - 1e6, 0.2),  # another clock, behind: it was a second
        (2.0, 100.0, 0.2),  # another host's monotonic clock: a second too
        (2.0, NOW + 1e6, 0.2),  # another clock, ahead: past the deadline, no last read
        (600.0, NOW + 1e6, 1.0),  # at most a second
    ],
)
def test_a_resumed_fleet_wait_reads_last_a_tenth_of_the_watch_s_timeout_before_it(
    timeout: float, saved_start: float, lead: float
) -> None:
    """The saved state's start, not the watch's, set the last read's lead; one past
    the deadline left the wait none, and the claim at the deadline expired it unread,
    where a live wait reads once more."""
    record = WatchRecord("faceswap", None, timeout, NOW + timeout)
    state = _until(WaitState.start("t-1", EVERY_3S, saved_start), record)
    assert state.deadline == pytest.approx(record.deadline, abs=1e-6)
    now = record.deadline - 3 * lead  # the paced read would come after the deadline
    _, decision = state.observe(Task(id="t-1", status="running", percent=10), now)
    assert isinstance(decision, ReadAt)
    assert decision.at == pytest.approx(record.deadline - lead, abs=1e-6)


@pytest.mark.parametrize(
    ("timeout", "deadline"), [(1e300, NOW), (0.0, NOW), (5.0, 1e300), (5.0, -1e300)]
)
def test_a_record_no_watch_wrote_resumes_a_state_that_saves_and_loads(
    timeout: float, deadline: float
) -> None:
    record = WatchRecord("faceswap", None, timeout, deadline)
    state = _until(WaitState.start("t-1", EVERY_3S, NOW), record)
    state, _ = state.observe(Task(id="t-1", status="running", percent=10), NOW)
    assert WaitState.from_json(json.loads(json.dumps(state.to_json(), allow_nan=False)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(metadata=json_values)
def test_records_and_outcomes_survive_json(metadata: object) -> None:
    record = WatchRecord("media", metadata, 60.0, 1e9)
    assert _decode.record(record.dumps(), 1e9) == record
    task = converter.structure(task_json(status="done", percent=100), Task)
    for kind in ("done", "failed"):
        outcome = Outcome(kind, task)  # type: ignore[arg-type]
        assert _decode.outcome(outcome.dumps()) == outcome
    assert _decode.outcome(Outcome("expired", None, 5.0).dumps()) == Outcome("expired", None, 5.0)


RUNNING = Task(id="t-1", status="running", percent=40)
FAILED_TASK = Task(id="t-1", status="failed", percent=30, error="no face found")
DONE = Task(id="t-1", status="done", percent=100)
GONE = NotFoundError("Task not found", status_code=404)
UNAVAILABLE = ServerError("Service Unavailable", status_code=503)


@pytest.mark.parametrize(
    ("outcome", "task", "last_error", "error_type", "said"),
    [
        ("done", DONE, None, None, None),
        ("failed", FAILED_TASK, None, TaskFailedError, "no face found"),
        ("error", None, GONE, NotFoundError, "Task not found"),
        ("error", None, None, GPTunnelError, "the wait for task t-1 ended with an error"),
        ("expired", None, None, WaitTimeoutError, "was not seen to finish within 60s"),
        ("expired", RUNNING, UNAVAILABLE, WaitTimeoutError, "last seen running at 40%"),
    ],
)
def test_a_delivery_s_error_is_what_its_wait_s_result_raises(
    outcome: OutcomeKind,
    task: Task | None,
    last_error: GPTunnelError | None,
    error_type: type[GPTunnelError] | None,
    said: str | None,
) -> None:
    delivery = Delivery("t-1", "faceswap", None, outcome, task, last_error=last_error, timeout=60.0)
    error = delivery.error
    if error_type is None:
        assert error is None
        return
    assert type(error) is error_type and said is not None and said in str(error)
    if outcome == "error" and last_error is not None:
        assert error is last_error
    if isinstance(error, WaitTimeoutError):
        assert (error.timeout, error.task, error.last_error) == (60.0, task, last_error)
        assert error.still_watched is False
        assert error.__cause__ is last_error
        assert "its wait expired" in str(error)
    assert delivery.error is not error or outcome == "error"  # a new error each time


def test_a_progress_listener_keeps_bounded_memory_of_the_tasks_it_may_end() -> None:
    """Anyone may publish on the channel: 600 forged notices of 63 KB grew every
    listener by 871 MB when each was kept as decoded objects."""
    last = _LastNotices()
    big = {"pad": ["x" * 60] * 1000}
    for number in range(600):
        last.remember(FleetProgress(f"t-{number}", "running", 40, big))
    assert last._bytes <= PROGRESS_REMEMBERED_BYTES
    assert last.ended("t-0", "done") is None  # forgotten first
    newest = last.ended("t-599", "failed")
    assert newest == FleetProgress("t-599", "failed", 40, big, None, ended=True)
    assert last.ended("t-599", "done") is None  # ended once
    for number in range(PROGRESS_REMEMBERED + 5):
        last.remember(FleetProgress(f"s-{number}", "running", 10, number))
    assert len(last._tasks) == PROGRESS_REMEMBERED
    done = last.ended(f"s-{PROGRESS_REMEMBERED + 4}", "done")
    assert done is not None and (done.percent, done.remaining, done.ended) == (100, 0.0, True)
